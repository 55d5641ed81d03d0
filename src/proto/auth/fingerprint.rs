//! TEMP STUB
pub fn parse(_s: &str) -> Option<Vec<u8>> {
    unimplemented!()
}
pub fn format_sha1(_b: &[u8; 20]) -> String {
    unimplemented!()
}
