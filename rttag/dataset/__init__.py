"""Dataset building: vetted Debian-packaged recordings → strongly labelled soundscapes.

``sources`` fetches, unpacks, reads and decodes the listed recordings; ``splits`` decides
which package feeds which split; ``mixer`` mixes soundscapes; ``build`` and ``demo`` are the
``rttag data build`` / ``rttag data demo`` commands. Torch-free.
"""
