//! Tokens: random secrets handed out once and stored only as SHA-256
//! hashes (API tokens, sessions, enrollment tokens, agents' keys).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of a token: what is stored and compared.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The first characters of a token: enough for an operator to tell tokens
/// apart in a list, far too few to use.
pub fn token_prefix(token: &str) -> String {
    token.chars().take(8).collect()
}

/// A fresh random token (256 bits, hex).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
