//! The same link settings as molpeg-nn's binaries (libtorch's directory in the rpath, CUDA kept
//! linked): this crate's binary and tests link libtorch through molpeg-nn.

#[path = "../molpeg-nn/build.rs"]
mod torch_link;

fn main() {
    torch_link::main();
}
