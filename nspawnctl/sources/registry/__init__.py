"""Images from registries (`create --from docker://REF`, `pull REF`).

reference.py reads references, shortnames.py resolves short names through registries.conf,
skopeo.py runs skopeo within nspawnctl's bounds, pull.py pulls an image into the blob store
(store/blobs.py), and source.py is the Source plugin that makes base trees of pulled images.
"""
