//! TEMP STUB
pub fn derive_key(_secret: &str, _salt: &str, _iterations: u32, _keylen: usize) -> Vec<u8> {
    unimplemented!()
}
pub fn challenge_text(
    _authid: &str,
    _authrole: &str,
    _authprovider: &str,
    _session: u64,
    _nonce: &str,
    _timestamp: &str,
) -> String {
    unimplemented!()
}
pub fn verify(_key: &[u8], _challenge: &str, _signature_b64: &str) -> bool {
    unimplemented!()
}
