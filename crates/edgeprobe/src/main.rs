//! The `edgeprobe` binary: everything is the library's [`edgeprobe::main`].

fn main() -> std::process::ExitCode {
    edgeprobe::main()
}
