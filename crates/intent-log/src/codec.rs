//! The one place where record bodies are encoded: serde + bincode 2, behind a format
//! version byte so a future layout can be told apart from this one.
//!
//! The log frames opaque bytes; callers that store typed records use these helpers so every
//! body on disk starts with [`BODY_FORMAT_VERSION`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::options::RECORD_BYTES_MAX_LIMIT;

/// Version of the body encoding (bincode 2 standard configuration, varint integers).
pub const BODY_FORMAT_VERSION: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<RECORD_BYTES_MAX_LIMIT>()
}

/// Encodes `value` as a record body.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut body = vec![BODY_FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut body, config())
        .map_err(|error| Error::Decode(format!("encode: {error}")))?;
    Ok(body)
}

/// Decodes a record body written by [`encode`]. Never panics on arbitrary bytes, and
/// allocates at most [`RECORD_BYTES_MAX_LIMIT`].
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let Some((&version, rest)) = body.split_first() else {
        return Err(Error::Decode("empty body".to_string()));
    };
    if version != BODY_FORMAT_VERSION {
        return Err(Error::Decode(format!(
            "body format version {version}, this build reads {BODY_FORMAT_VERSION}"
        )));
    }
    let (value, used) = bincode::serde::decode_from_slice(rest, config())
        .map_err(|error| Error::Decode(error.to_string()))?;
    if used != rest.len() {
        return Err(Error::Decode(format!(
            "{} trailing bytes",
            rest.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        amounts: Vec<String>,
    }

    #[test]
    fn round_trip_and_rejections() {
        let sample = Sample {
            id: 9,
            name: "bet".into(),
            amounts: vec!["10.00".into()],
        };
        let body = encode(&sample).unwrap();
        assert_eq!(body[0], BODY_FORMAT_VERSION);
        assert_eq!(decode::<Sample>(&body).unwrap(), sample);
        assert!(decode::<Sample>(&[]).is_err());
        assert!(decode::<Sample>(&[2, 0]).is_err());
        let mut trailing = body.clone();
        trailing.push(0);
        assert!(decode::<Sample>(&trailing).is_err());
        // A huge announced length must not allocate: bincode's limit refuses it.
        assert!(
            decode::<Vec<u8>>(&[1, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err()
        );
    }
}
