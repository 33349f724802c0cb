export { DicomReceiver, type ReceiverOptions, type ReceiverStats } from './receiver.js';
export { StoreStatus, Reject, negotiateContext, checkAeTitles } from './policy.js';
export { buildFileMetaHeader, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from './part10.js';
