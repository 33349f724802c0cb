/**
 * The one error the DICOM builders throw on bad input: a result document, a source or a CAM that does not
 * fit. Retrying cannot help (`retryable: false`): the queue turns it into a permanent failure.
 */
export class SrInputError extends Error {
  readonly code = 'SR_INPUT_INVALID';
  readonly retryable = false;

  constructor(message: string) {
    super(message);
    this.name = 'SrInputError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}
