"""What nibabel (an independent NIfTI implementation) says about NIfTI files: the oracle for the TypeScript
reader and writer tests. Run with Debian's python, which has nibabel and numpy: /usr/bin/python3.

    /usr/bin/python3 test/oracles/nibabel_oracle.py describe FILE...   # JSON list, one description per file
    /usr/bin/python3 test/oracles/nibabel_oracle.py write-variants DIR # nibabel writes test files into DIR;
                                                                      # JSON: their descriptions + extras

A description holds what the reader must reproduce: the voxel checksum is the sha256 of the *unscaled stored*
values as little-endian bytes in Fortran order (x fastest), i.e. what Buffer.from(<host-order typed array>)
gives on a little-endian host; min/max/sum/absSum are over the *scaled* values in float64, NaN ignored.
"""

import hashlib
import json
import os
import sys

import nibabel as nib
import numpy as np


def _affine_source(img):
    header = img.header
    sform, sform_code = header.get_sform(coded=True)
    qform, qform_code = header.get_qform(coded=True)
    if sform_code and np.array_equal(img.affine, sform):
        return 'sform'
    if qform_code and np.array_equal(img.affine, qform):
        return 'qform'
    return 'fallback'


def describe(path, name=None):
    """Describes a single-file NIfTI image; raises if nibabel cannot read it as one."""
    img = nib.load(path)
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass; .hdr/.img pairs are not
        raise TypeError(f'{type(img).__name__} is not a single-file NIfTI image')
    header = img.header
    raw = np.asanyarray(img.dataobj.get_unscaled())
    scaled = img.get_fdata(dtype=np.float64)
    finite = scaled[~np.isnan(scaled)]
    little_endian = raw.astype(raw.dtype.newbyteorder('<'), copy=False)
    ndim = len(img.shape)
    qform_code = int(header['qform_code'])
    return {
        'file': name or path,
        'version': 2 if isinstance(img, nib.Nifti2Image) else 1,
        'dims': [int(size) for size in img.shape],
        'datatype': raw.dtype.newbyteorder('=').name,
        'littleEndian': header.endianness == '<',
        'voxOffset': int(img.dataobj.offset),
        'sclSlope': float(img.dataobj.slope),
        'sclInter': float(img.dataobj.inter),
        'pixdim': [float(value) for value in header['pixdim'][1 : ndim + 1]],
        'qformCode': qform_code,
        'sformCode': int(header['sform_code']),
        'affine': img.affine.tolist(),
        'affineSource': _affine_source(img),
        'qformAffine': header.get_qform().tolist() if qform_code > 0 else None,
        'description': header['descrip'].item().decode('latin1'),
        'voxelCount': int(raw.size),
        'nanCount': int(np.isnan(scaled).sum()),
        'min': float(finite.min()) if finite.size else None,
        'max': float(finite.max()) if finite.size else None,
        'sum': float(finite.sum()),
        'absSum': float(np.abs(finite).sum()),
        'sha256': hashlib.sha256(little_endian.tobytes(order='F')).hexdigest(),
    }


def _rotation_affine(spacing, offset):
    """A non-trivial voxel->world affine: a rotation about an oblique axis, scaled, x mirrored."""
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    angle = 0.4
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing) @ np.diag([-1, 1, 1])
    affine[:3, 3] = offset
    return affine


def write_variants(out_dir):
    """Every supported datatype in both byte orders, NIfTI-1 and -2, integers scaled by nibabel's own writer."""
    rng = np.random.default_rng(20240611)
    shape = (7, 5, 3, 2)
    affine = _rotation_affine([1.5, 2.0, 2.5], [-40.0, 12.5, 7.25])
    written = []
    datatypes = ['uint8', 'int8', 'int16', 'uint16', 'int32', 'uint32', 'float32', 'float64']
    for version, image_type in [(1, nib.Nifti1Image), (2, nib.Nifti2Image)]:
        for byte_order in '<>':
            for index, datatype in enumerate(datatypes):
                dtype = np.dtype(datatype)
                if dtype.kind == 'f':
                    values = rng.normal(50, 1000, shape).astype(dtype)
                    values.flat[3] = np.nan
                else:
                    # floats that nibabel must scale to fit the integer type: it picks slope and intercept
                    values = rng.uniform(-250.5, 4000.25, shape)
                header = image_type.header_class(endianness=byte_order)
                header.set_data_dtype(dtype.newbyteorder(byte_order))
                img = image_type(values, affine, header)
                # alternate sform+qform with qform only, so both ways to the affine get read
                img.set_qform(affine, code='scanner')
                img.set_sform(affine, code=0 if index % 2 else 'aligned')
                name = f'nibabel-v{version}-{datatype}-{"le" if byte_order == "<" else "be"}.nii'
                path = os.path.join(out_dir, name + ('.gz' if index % 3 == 0 else ''))
                nib.save(img, path)
                written.append(describe(path))
    analyze = os.path.join(out_dir, 'analyze.hdr')
    nib.save(nib.AnalyzeImage(rng.integers(0, 100, (4, 3, 2)).astype(np.int16), np.eye(4)), analyze)
    return {'images': written, 'analyzeHeader': analyze}


def main(argv):
    if len(argv) >= 2 and argv[0] == 'describe':
        result = [describe(path) for path in argv[1:]]
    elif len(argv) == 2 and argv[0] == 'write-variants':
        result = write_variants(argv[1])
    else:
        sys.exit(__doc__)
    json.dump(result, sys.stdout, allow_nan=False)


if __name__ == '__main__':
    main(sys.argv[1:])
