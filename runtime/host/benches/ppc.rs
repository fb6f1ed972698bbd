//! `cargo bench -p host-runtime`: the host runtime's PPC round trip against
//! a raw two-process futex ping-pong, measured in the same run (see
//! src/bin/test_pd/bench.rs). Prints `name: value` lines, the ratio last.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn main() {
    let dir = std::env::temp_dir().join(format!("ppc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sys = dir.join("system.xml");
    std::fs::write(
        &sys,
        r#"<system>
  <protection_domain name="benchcaller" priority="10"><program_image path="test_pd"/></protection_domain>
  <protection_domain name="echo" priority="20"><program_image path="test_pd"/></protection_domain>
  <channel><end pd="benchcaller" id="1" pp="true"/><end pd="echo" id="1"/></channel>
</system>"#,
    )
    .unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_test_pd")).parent().unwrap().to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_host-runtime"))
        .arg(&sys)
        .arg("--search-path")
        .arg(bin_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("host-runtime");
    let mut results = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok) {
        if let Some(r) = line.split("BENCH ").nth(1) {
            results.push(r.to_owned());
        } else if line.contains("FAIL") || line.contains("panicked") {
            eprintln!("{line}");
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success() && results.len() == 3, "benchmark did not complete: {status:?} {results:?}");
    for r in results {
        println!("{r}");
    }
}
