//! A WASI 0.2 command component: `hello-p2 [NAME] [EXIT_CODE]`.
//! Rust's standard library reports EXIT_CODE through `wasi:cli/exit`, which wasmdyno passes through.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().cloned().unwrap_or_else(|| "world".into());
    println!("Hello, {name}! Greetings from a WASI 0.2 component.");
    let code = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    std::process::exit(code);
}
