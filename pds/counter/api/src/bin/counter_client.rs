//! The counter client PD on the host runtime.
fn main() {
    let pd = host_runtime::HostPd::from_env().unwrap_or_else(|e| panic!("{e}"));
    counter_api::run(&pd);
    std::thread::park(); // halting: wait to be told to exit
}
