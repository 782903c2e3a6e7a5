pub fn run() -> hutch::Result<u8> {
    println!("{}", serde_json::to_string_pretty(&hutch::spec::features()).expect("json"));
    Ok(0)
}
