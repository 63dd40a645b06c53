//! berthd: serves the CRI on a unix socket for kubelet, crictl and critest.

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("--version") | Some("version") => println!(
            "berthd {} (CRI {})",
            env!("CARGO_PKG_VERSION"),
            berth_cri::CRI_API_VERSION
        ),
        _ => {
            eprintln!("berthd: the CRI server is not built yet (see the cri-server issue)");
            std::process::exit(2);
        }
    }
}
