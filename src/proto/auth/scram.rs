//! TEMP STUB
pub enum Kdf {
    Argon2id13,
    Pbkdf2,
}
impl Kdf {
    pub fn parse(_s: &str) -> Option<Kdf> {
        unimplemented!()
    }
}
pub fn server_nonce(_client_nonce_b64: &str, _random: &[u8; 16]) -> String {
    unimplemented!()
}
pub fn auth_message(_authid: &str, _client_nonce: &str, _server_nonce: &str, _salt: &[u8], _iterations: u32) -> String {
    unimplemented!()
}
pub fn verify_proof(_stored_key: &[u8], _auth_message: &str, _proof_b64: &str) -> bool {
    unimplemented!()
}
pub fn server_signature(_server_key: &[u8], _auth_message: &str) -> String {
    unimplemented!()
}
