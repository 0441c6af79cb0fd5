import assert from 'node:assert/strict';
import { test } from 'node:test';
import { scrubPrivateDetails } from './scrub.js';

test('failure messages lose the site folders, absolute paths, file URLs and BraTS subject ids', () => {
  const data = '/srv/Karolinska Hospital/brats';
  const text =
    `the site's data folder ${data} has no cases; ENOENT: open '/var/lib/fedsynth/slices/cpu32.fss', ` +
    `see file:///var/lib/x.fss or C:\\data\\site\\a.nii.gz; BraTS2021_00042, BraTS20_Training_001 and ` +
    `BraTS-GLI-00012-000 failed`;
  const scrubbed = scrubPrivateDetails(text, [data]);
  for (const leak of [
    'Karolinska',
    '/srv',
    '/var/lib',
    'C:\\',
    'file:',
    'BraTS2021_00042',
    'Training_001',
    'GLI',
  ]) {
    assert.ok(!scrubbed.includes(leak), `${leak} in ${scrubbed}`);
  }
  assert.match(scrubbed, /^the site's data folder <path> has no cases; ENOENT: open '<path>'/);
  assert.match(scrubbed, /<subject>, <subject> and <subject> failed$/);
  // What is not private stays readable: relative names, ratios, URLs of the coordinator.
  const plain =
    'loss is NaN at step 3 (0.5 ms/step) in train-mix.fss from https://coordinator.example.org/api';
  assert.equal(scrubPrivateDetails(plain), plain);
});
