"""Writes test/fixtures/nifti-compat.expected.json: what nibabel reads from the shared real NIfTI files, the
expected values for common/src/nifti/nifti-reader.spec.ts.

Regenerate (from the repository root, after the shared data or nibabel changes):

    /usr/bin/python3 test/oracles/nifti_compat_expected.py
    npx prettier --write test/fixtures/nifti-compat.expected.json

The data is read from ../shared/data (or $FEDSYNTH_SHARED_DATA): every file of nifti-compat/ that nibabel reads
as a single-file NIfTI image, and the five files of the BraTS sample case. Files nibabel cannot read that way
are listed under "refused" with nibabel's own verdict; the reader must refuse them too.
"""

import json
import os
import sys

import nibabel as nib
import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the repository when importing the oracle below
from nibabel_oracle import describe  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DATA_DIR = os.environ.get('FEDSYNTH_SHARED_DATA') or os.path.join(REPO_ROOT, '..', 'shared', 'data')
OUTPUT = os.path.join(REPO_ROOT, 'test', 'fixtures', 'nifti-compat.expected.json')
BRATS_CASE = os.path.join('brats-sample', 'BraTS-GLI-00000-000')


def nibabel_verdict(path, relative):
    """Why nibabel's view of a file is not a single-file NIfTI image, in nibabel's words (paths made relative)."""

    def explain(error):
        return f'{type(error).__name__}: {error}'.replace(os.path.dirname(path), os.path.dirname(relative))

    try:
        img = nib.load(path)
    except Exception as error:  # nibabel raises several types; the message is what matters here
        return f'nib.load fails: {explain(error)}'
    try:
        np.asanyarray(img.dataobj)
    except Exception as error:
        return f'loads as {type(img).__name__}, voxels unreadable: {explain(error)}'
    return f'loads as {type(img).__name__} (header and voxels in separate files), not a single-file image'


def main():
    if not os.path.isdir(DATA_DIR):
        sys.exit(f'shared data not found at {DATA_DIR}; set FEDSYNTH_SHARED_DATA')
    names = [os.path.join('nifti-compat', name) for name in sorted(os.listdir(os.path.join(DATA_DIR, 'nifti-compat')))]
    names += [os.path.join(BRATS_CASE, name) for name in sorted(os.listdir(os.path.join(DATA_DIR, BRATS_CASE)))]
    images, refused = [], []
    for name in names:
        path = os.path.join(DATA_DIR, name)
        relative = name.replace(os.sep, '/')
        try:
            images.append(describe(path, relative))
        except Exception:
            refused.append({'file': relative, 'nibabel': nibabel_verdict(path, relative)})
    result = {
        'generatedBy': f'test/oracles/nifti_compat_expected.py with nibabel {nib.__version__}, numpy {np.__version__}',
        'images': images,
        'refused': refused,
    }
    with open(OUTPUT, 'w', encoding='utf-8') as out:
        json.dump(result, out, indent=2, allow_nan=False)
        out.write('\n')
    print(f'{OUTPUT}: {len(images)} images, {len(refused)} refused')


if __name__ == '__main__':
    main()
