//! Test guest: a command component that imports `acme:missing/thing@0.1.0`, an interface no host
//! provides, so instantiation must fail with a clear error.

wit_bindgen::generate!({
    inline: "
        package acme:missing@0.1.0;

        interface thing {
            ping: func() -> u32;
        }

        world bad-import {
            import thing;
        }
    ",
});

fn main() {
    println!("bad-import: ping = {}", acme::missing::thing::ping());
}
