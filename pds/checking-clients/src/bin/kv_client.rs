//! The client PD on the host runtime. It works from `init`, as a Microkit
//! PD may, and never returns to the event loop.
fn main() {
    let pd = match host_runtime::HostPd::from_env() {
        Ok(pd) => pd,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    checking_clients::run(&pd);
    // Halting: wait to be told to exit like every other PD.
    std::thread::park();
}
