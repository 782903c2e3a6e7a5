//! Decoding the messages between the process stages never panics, and what decodes re-encodes
//! to the same message.
#![no_main]

use hutch::channel::decode;
use hutch::process::message::{InitMsg, IntermediateMsg, MainMsg};
use libfuzzer_sys::fuzz_target;

fn roundtrip<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(msg) = decode::<T>(data) {
        let again: T = decode(&serde_json::to_vec(&msg).unwrap()).unwrap();
        assert_eq!(msg, again);
    }
}

fuzz_target!(|data: &[u8]| {
    roundtrip::<MainMsg>(data);
    roundtrip::<IntermediateMsg>(data);
    roundtrip::<InitMsg>(data);
});
