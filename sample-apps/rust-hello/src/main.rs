//! A one-off command: `hello [NAME] [EXIT_CODE]`.
//! Greets NAME (or $NAME), counts the lines on stdin when asked with `-`, and exits with EXIT_CODE.

use std::io::BufRead;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = match args.first().map(String::as_str) {
        Some("-") | None => std::env::var("NAME").unwrap_or_else(|_| "world".into()),
        Some(name) => name.to_string(),
    };
    let dyno = std::env::var("DYNO").unwrap_or_else(|_| "a dyno".into());
    println!("Hello, {name}! Greetings from {dyno}, Rust compiled to WebAssembly.");

    if args.first().map(String::as_str) == Some("-") {
        let lines = std::io::stdin().lock().lines().count();
        let mut buf = itoa::Buffer::new();
        println!("stdin had {} lines", buf.format(lines));
    }
    let code = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    std::process::exit(code);
}
