//! The keyring file: the data key wrapped either by an Argon2id passphrase key or by a 0600
//! key file, so that nothing on disk is readable without one of the two.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use data_encoding::BASE64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{DataKey, random_bytes};
use crate::home::{Home, write_private};

const WRAP_AAD: &[u8] = b"samizdat/v1/keyring";

/// Argon2id cost used for new keyrings: 64 MiB, 3 passes (OWASP's "first choice" is 46 MiB/1;
/// this spends ~0.3 s once per start on a 2-core machine).
const ARGON2_M_KIB: u32 = 64 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;

/// How the data key is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Wrapped by a key derived from the user's passphrase (Argon2id).
    Passphrase,
    /// Wrapped by the random key in `master.key` (0600), for unattended nodes.
    KeyFile,
}

/// Errors opening or creating the keyring.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The passphrase does not unlock this home.
    #[error("wrong passphrase for this home directory")]
    WrongPassphrase,
    /// The home is passphrase-protected and none was given.
    #[error(
        "this home is protected by a passphrase: set SAMIZDAT_PASSPHRASE or pass --passphrase-file"
    )]
    PassphraseRequired,
    /// `master.key` does not unlock the keyring.
    #[error("master.key does not match keyring.json (was one of them replaced?)")]
    WrongKeyFile,
    /// A file is missing, unreadable or malformed.
    #[error("keyring {what}: {detail}")]
    Corrupt {
        /// Which file.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The passphrase is empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// Reading or writing a file failed.
    #[error("keyring I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    version: u32,
    protection: Protection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfParams>,
    nonce: String,
    wrapped_key: String,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct KdfParams {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    #[serde(with = "b64_16")]
    salt: [u8; 16],
}

mod b64_16 {
    use data_encoding::BASE64;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        let v = BASE64.decode(s.as_bytes()).map_err(D::Error::custom)?;
        v.try_into()
            .map_err(|_| D::Error::custom("salt must be 16 bytes"))
    }
}

/// Unlocks and creates keyrings.
pub struct Keyring;

impl Keyring {
    /// Creates a new data key and writes it wrapped: by `passphrase` if given, else by a new
    /// `master.key`.
    pub fn create(home: &Home, passphrase: Option<&str>) -> Result<DataKey, KeyringError> {
        Self::create_with_cost(home, passphrase, ARGON2_M_KIB, ARGON2_T)
    }

    /// As [`Keyring::create`] with a chosen Argon2 cost (tests use a cheap one).
    pub fn create_with_cost(
        home: &Home,
        passphrase: Option<&str>,
        m_cost_kib: u32,
        t_cost: u32,
    ) -> Result<DataKey, KeyringError> {
        let data_key = DataKey::generate();
        let (protection, kdf, wrapping) = match passphrase {
            Some(p) => {
                if p.is_empty() {
                    return Err(KeyringError::EmptyPassphrase);
                }
                let kdf = KdfParams {
                    m_cost_kib,
                    t_cost,
                    p_cost: ARGON2_P,
                    salt: random_bytes(),
                };
                (Protection::Passphrase, Some(kdf), derive(p, &kdf)?)
            }
            None => {
                let key = Zeroizing::new(random_bytes::<32>());
                write_private(&home.master_key_file(), key.as_slice())?;
                (Protection::KeyFile, None, key)
            }
        };
        let nonce: [u8; 24] = random_bytes();
        let cipher = XChaCha20Poly1305::new(&Key::from(*wrapping));
        #[allow(clippy::expect_used)]
        let wrapped = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: data_key.expose(),
                    aad: WRAP_AAD,
                },
            )
            .expect("in-memory encryption");
        let file = KeyringFile {
            version: 1,
            protection,
            kdf,
            nonce: BASE64.encode(&nonce),
            wrapped_key: BASE64.encode(&wrapped),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| KeyringError::Corrupt {
            what: "keyring.json",
            detail: e.to_string(),
        })?;
        write_private(&home.keyring_file(), &json)?;
        Ok(data_key)
    }

    /// How this home's data key is protected.
    pub fn protection(home: &Home) -> Result<Protection, KeyringError> {
        Ok(read_file(&home.keyring_file())?.protection)
    }

    /// Unwraps the data key; `passphrase` is needed when the home is passphrase-protected.
    pub fn unlock(home: &Home, passphrase: Option<&str>) -> Result<DataKey, KeyringError> {
        let file = read_file(&home.keyring_file())?;
        let corrupt = |detail: &str| KeyringError::Corrupt {
            what: "keyring.json",
            detail: detail.to_string(),
        };
        if file.version != 1 {
            return Err(corrupt("unknown version"));
        }
        let nonce: [u8; 24] = BASE64
            .decode(file.nonce.as_bytes())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| corrupt("bad nonce"))?;
        let wrapped = BASE64
            .decode(file.wrapped_key.as_bytes())
            .map_err(|_| corrupt("bad wrapped key"))?;
        let (wrapping, wrong) = match file.protection {
            Protection::Passphrase => {
                let p = passphrase.ok_or(KeyringError::PassphraseRequired)?;
                let kdf = file.kdf.ok_or_else(|| corrupt("missing kdf parameters"))?;
                (derive(p, &kdf)?, KeyringError::WrongPassphrase)
            }
            Protection::KeyFile => {
                let bytes = Zeroizing::new(std::fs::read(home.master_key_file()).map_err(|e| {
                    KeyringError::Corrupt {
                        what: "master.key",
                        detail: e.to_string(),
                    }
                })?);
                let key: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| KeyringError::Corrupt {
                            what: "master.key",
                            detail: format!("expected 32 bytes, found {}", bytes.len()),
                        })?;
                (Zeroizing::new(key), KeyringError::WrongKeyFile)
            }
        };
        let cipher = XChaCha20Poly1305::new(&Key::from(*wrapping));
        let raw = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &wrapped,
                        aad: WRAP_AAD,
                    },
                )
                .map_err(|_| wrong)?,
        );
        let key: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("wrapped key has the wrong length"))?;
        Ok(DataKey::from_bytes(key))
    }
}

fn read_file(path: &Path) -> Result<KeyringFile, KeyringError> {
    let bytes = std::fs::read(path).map_err(|e| KeyringError::Corrupt {
        what: "keyring.json",
        detail: format!("{}: {e}", path.display()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| KeyringError::Corrupt {
        what: "keyring.json",
        detail: e.to_string(),
    })
}

fn derive(passphrase: &str, kdf: &KdfParams) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
    let bad = |e: argon2::Error| KeyringError::Corrupt {
        what: "keyring.json",
        detail: format!("argon2 parameters: {e}"),
    };
    let params = Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32)).map_err(bad)?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), &kdf.salt, out.as_mut_slice())
        .map_err(bad)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path());
        (dir, home)
    }

    #[test]
    fn passphrase_unlocks_and_wrong_one_is_a_clear_error() {
        let (_d, home) = home();
        let key = Keyring::create_with_cost(&home, Some("correct horse"), 256, 1).expect("create");
        let again = Keyring::unlock(&home, Some("correct horse")).expect("unlock");
        assert_eq!(key.expose(), again.expose());
        assert!(matches!(
            Keyring::unlock(&home, Some("wrong")),
            Err(KeyringError::WrongPassphrase)
        ));
        assert!(matches!(
            Keyring::unlock(&home, None),
            Err(KeyringError::PassphraseRequired)
        ));
        assert!(!home.master_key_file().exists());
    }

    #[test]
    fn key_file_mode_needs_the_matching_file() {
        let (_d, home) = home();
        let key = Keyring::create(&home, None).expect("create");
        assert_eq!(Keyring::protection(&home).expect("p"), Protection::KeyFile);
        assert_eq!(
            Keyring::unlock(&home, None).expect("unlock").expose(),
            key.expose()
        );
        std::fs::write(home.master_key_file(), [9u8; 32]).expect("overwrite");
        assert!(matches!(
            Keyring::unlock(&home, None),
            Err(KeyringError::WrongKeyFile)
        ));
        std::fs::write(home.master_key_file(), [9u8; 3]).expect("truncate");
        assert!(matches!(
            Keyring::unlock(&home, None),
            Err(KeyringError::Corrupt { .. })
        ));
    }

    #[test]
    fn garbage_keyring_is_a_clear_error() {
        let (_d, home) = home();
        std::fs::write(home.keyring_file(), b"{not json").expect("write");
        assert!(matches!(
            Keyring::unlock(&home, None),
            Err(KeyringError::Corrupt { .. })
        ));
    }
}
