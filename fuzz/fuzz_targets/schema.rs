#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qmpkit_schema::fuzzing::schema(data));
