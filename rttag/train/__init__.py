"""Torch side of rttag: model definitions, features, augmentation, training, export, drift check.

Imported only by ``rttag train`` / ``rttag export`` (extra ``train``); the runtime package never
imports torch. See docs/TRAINING.md.
"""
