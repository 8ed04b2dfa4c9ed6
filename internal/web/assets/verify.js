// verify.js checks, in the browser with WebCrypto, what the server sends:
// DSSE signatures, RFC 6962 inclusion and consistency proofs and the
// checkpoint's signed note. (Being written; see internal/web/doc.go.)
export {};
