//! The file service's client PD on the host runtime. It stops its load
//! once the file named by `HOST_FS_STOP` exists (the tests create it after
//! their updates), then closes and checks its files and logs its model.
fn run(pd: &host_runtime::HostPd) {
    let stop_file = std::env::var_os("HOST_FS_STOP");
    let stop = || stop_file.as_ref().is_some_and(|p| std::path::Path::new(p).exists());
    checking_clients::fs::run(pd, &stop, std::env::var_os("HOST_FS_DIRS").is_some());
}

host_runtime::client_main!(run);
