fn main() {
    eprintln!("streamfs: the mount is not available in this build yet; use mountctl");
    std::process::exit(2);
}
