import { defineConfig } from 'vitest/config';

// Integration tests: real Redis, Orthanc, dcmtk, dicom3tools. Run one file at a time so that
// the processes they start do not fight over the two cores.
export default defineConfig({
  test: {
    include: ['test/integration/**/*.test.ts'],
    globals: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
