//! The zig-hello sample: a command built by `zig build` for wasm32-wasi. `hello NAME` greets NAME and says
//! which dyno it runs in.
const std = @import("std");

pub fn main(init: std.process.Init) !void {
    var buffer: [512]u8 = undefined;
    var stdout = std.Io.File.stdout().writerStreaming(init.io, &buffer);
    const out = &stdout.interface;
    const args = try init.minimal.args.toSlice(init.arena.allocator());
    const name = if (args.len > 1) args[1] else "world";
    const dyno = init.environ_map.get("DYNO") orelse "no dyno";
    try out.print("Hello, {s}, from Zig on {s}.\n", .{ name, dyno });
    try out.flush();
}
