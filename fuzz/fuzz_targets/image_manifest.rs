//! Manifests, indexes and image configs as a registry may send them: reading
//! them never panics, and every digest accepted for a fetch is a plain sha256
//! digest (no path can be built from anything else).
#![no_main]
use berth_image::pull::{diff_ids_of, layers_of, select_platform};
use berth_image::snapshot::chain_ids;
use libfuzzer_sys::fuzz_target;

fn plain(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = select_platform("fuzz", &v);
    if let Ok(plan) = layers_of("fuzz", &v) {
        assert!(plain(&plan.config_digest), "{}", plan.config_digest);
        for (d, _, _) in &plan.layers {
            assert!(plain(d), "{d}");
        }
        if let Ok(ids) = diff_ids_of("fuzz", &v, plan.layers.len()) {
            assert_eq!(ids.len(), plan.layers.len());
            assert_eq!(chain_ids(&ids).len(), ids.len());
        }
    }
    let _ = berth_image::image_user(&v);
});
