//! A WebAssembly sync hook that does what the parent's `spec.mode` says: `loop` forever,
//! `sleep` five minutes,
//! `grow` its memory without bound, `trap`, `flood` its output, `exit` with status 7 — or
//! answer one ConfigMap, `<parent>-config`, as the engine tests' standard hook does; or, given
//! `RESPONSE` in its environment, answer that. Standard library only: it finds the mode and
//! name in the request's text.

use std::io::{Read, Write};

fn field<'a>(request: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\":\"");
    request.split_once(&needle).and_then(|(_, rest)| rest.split_once('"')).map_or("", |(value, _)| value)
}

fn main() {
    let mut request = String::new();
    std::io::stdin().read_to_string(&mut request).unwrap();
    // The protocol vectors' test gives the answer.
    if let Ok(response) = std::env::var("RESPONSE") {
        return print!("{response}");
    }
    match field(&request, "mode") {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => panic!("the module trapped on purpose"),
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(300)),
        "flood" => {
            let chunk = vec![b' '; 64 * 1024];
            loop {
                std::io::stdout().write_all(&chunk).unwrap();
            }
        }
        "exit" => {
            eprintln!("exiting with 7");
            std::process::exit(7);
        }
        _ => {}
    }
    let parent = request.split_once("\"parent\":").map_or("", |(_, parent)| parent);
    let name = field(parent, "name");
    print!(r#"{{"status":{{"phase":"Synced"}},"children":[{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}-config"}},"data":{{"mode":"{}"}}}}]}}"#, field(&request, "mode"));
}
