// dcmjs ships no type declarations (@types/dcmjs does not exist). We type the few entry points we use
// loosely here and validate the values we read at the boundary (src/dicom/meta.ts).
declare module 'dcmjs' {
  const dcmjs: any;
  export default dcmjs;
}
