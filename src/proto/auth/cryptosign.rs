//! TEMP STUB
pub fn parse_pubkey(_hex: &str) -> Option<[u8; 32]> {
    unimplemented!()
}
pub fn verify(_pubkey: &[u8; 32], _challenge: &[u8; 32], _signature_hex: &str) -> bool {
    unimplemented!()
}
