//! The runtime's OCI config validation: any config.json (and container ID) is
//! accepted or refused with an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((id, rest)) = data.split_first() {
        let id_len = (*id as usize).min(rest.len());
        if let Ok(id) = std::str::from_utf8(&rest[..id_len]) {
            if berth_runtime::spec::validate_id(id).is_ok() {
                assert!(!id.is_empty() && !id.contains('/') && id != "." && id != "..");
            }
        }
    }
    if let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(data) {
        let _ = berth_runtime::spec::validate(&spec);
    }
});
