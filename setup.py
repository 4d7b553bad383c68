from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="rttag",
    version="0.1.0",
    description="Streaming, real-time audio tagging daemon: JSON Lines on/off events from a microphone",
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rttag", "rttag.*"]),
    package_data={"rttag": ["schema/*.json", "assets/*.wav", "assets/*.tsv", "assets/*.md", "dataset/*.tsv"]},
    data_files=[("share/rttag/models", [str(p) for p in sorted(Path("models").glob("*.onnx"))])],
    install_requires=[
        "numpy>=1.24",
        "librosa>=0.10",
        "soundfile>=0.12",
        "sounddevice>=0.4.6",
        "pyyaml>=6",
        "onnxruntime-gpu>=1.18; sys_platform == 'linux' and platform_machine == 'x86_64'",
        "onnxruntime>=1.18; sys_platform != 'linux' or platform_machine != 'x86_64'",
    ],
    extras_require={
        "train": ["torch>=2.3", "onnx>=1.16", "onnxscript", "matplotlib>=3.7", "tqdm"],
        # sed_eval needs dcase_util, which imports pkg_resources (gone from setuptools 81 on)
        # and sed_scores_eval's Cython code fails on pandas 3's read-only (copy-on-write) arrays
        "eval": ["sed_eval>=0.2.1", "sed_scores_eval>=0.0.4", "matplotlib>=3.7", "setuptools<81", "pandas<3"],
        "dev": ["pytest>=8", "hypothesis>=6", "jsonschema>=4", "onnx>=1.16"],
    },
    entry_points={"console_scripts": ["rttag=rttag.cli:main"]},
)
