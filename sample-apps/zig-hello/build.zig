//! The zig-hello sample: a command built by `zig build` (this build.zig, Zig 0.17) for wasm32-wasi by wasmdyno's
//! C/Zig buildpack: `wasmdyno run --dir sample-apps/zig-hello hello Ada`.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const exe = b.addExecutable(.{
        .name = "hello",
        .root_module = b.createModule(.{
            .root_source_file = b.path("src/main.zig"),
            .target = target,
            .optimize = optimize,
        }),
    });
    b.installArtifact(exe);
}
