//! CRI requests as kubelet sends them, decoded from bytes (protobuf) and passed
//! through berthd's validation: no input panics, and a refusal is one line that
//! names a field (berthd answers it as InvalidArgument, kubelet shows it in an
//! event). The first byte picks the request.
#![no_main]
use berth_proto::v1 as cri;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn one_line(r: Result<(), String>) {
    if let Err(e) = r {
        assert!(!e.is_empty() && !e.contains('\n'), "refusal: {e:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(p) = cri::PodSandboxConfig::decode(bytes) {
                one_line(berth_cri::validate::pod_config(&p));
            }
        }
        1 => {
            if let Ok(c) = cri::ContainerConfig::decode(bytes) {
                one_line(berth_cri::validate::container_config(&c));
            }
        }
        _ => {
            if let Ok(r) = cri::CreateContainerRequest::decode(bytes) {
                if let Some(c) = &r.config {
                    one_line(berth_cri::validate::container_config(c));
                }
                if let Some(p) = &r.sandbox_config {
                    one_line(berth_cri::validate::pod_config(p));
                }
            }
        }
    }
});
