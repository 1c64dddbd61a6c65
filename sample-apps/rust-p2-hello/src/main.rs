//! A WASI 0.2 command component: `hello-p2 [NAME] [EXIT_CODE]`.
//! WASI 0.2's `wasi:cli/exit` carries only success or failure: a non-zero EXIT_CODE reaches the host as 1.
//! Build for `wasm32-wasip1` when exact exit codes matter.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().cloned().unwrap_or_else(|| "world".into());
    println!("Hello, {name}! Greetings from a WASI 0.2 component.");
    let code = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    std::process::exit(code);
}
