//! Integration tests: real nats-server, real object store, roles as real processes.

// The harness: servers, stores and role processes, stopped on drop.
mod support;
// A job from submission to assembled frames, across separate processes.
mod end_to_end;
// What the planner accepts, deduplicates and rejects, from the CLI and over NATS.
mod submission;
// Priorities, classes, the starvation guard, renderer matching, the worker registry.
mod scheduling;
// Paused queues and burst workers.
mod queues;
// `tessera up`: the one-command local farm.
mod local_farm;
// The server version every role requires.
mod server;
// Fair share: windows, weights, max_workers.
mod sharing;
// Limits: tokens held across workers and jobs, none lost to a dead worker.
mod limits;
// Suspending and resuming a job, and changing its priority, while it runs.
mod changes;
// Jobs that run after others: held until those are done, failed when they fail.
mod after;
// Jobs that run after another frame by frame: frame N after frame N, failures frame by frame.
mod frames;
// Killed workers, poison tasks, lost deliveries, restarts, duplicates.
mod failures;
// Collectors sharing the event partitions, and taking over a dead one's.
mod scale_out;
// Cancel, SIGTERM's grace, the blocklist, timeouts and hangs, retry, long renders.
mod stopping;
// POV-Ray and Blender: exact frames and tiles, progress, errors, capabilities.
mod renderers;
// Scene references checked at submit, uploads of what changed, the worker's scene cache.
mod scenes;
// Outputs the collector cannot use: retried, then failed with the reason.
mod bad_outputs;
// `tessera delete` and retention: nothing of a job left, its id usable again.
mod retention;
// Tiled frames stitched exactly, feathered without seams, animated tiles.
mod tiles;
// Layers composited after stitching: light passes added, over with an opacity.
mod composite;
// Sequence outputs: a movie ffprobe confirms, an animated PNG and a contact sheet, graded.
mod outputs;
// Versions: numbered atomically, published at once, immutable, approved, resubmitted.
mod versions;
// NATS with TLS and a custom CA, user and password, token: accepted and refused.
mod security;
// Watching: watch transcripts, status, jobs, logs --follow, workers, metrics scraped.
mod watching;
// The web dashboard: its endpoints, tokens, and its pages in a real headless Chromium.
mod web;
// compose.yaml and the Dockerfile against the real binaries' flags, images and ports.
mod compose;
// Past one machine: a three-server cluster, a killed stream leader, and the chaos test.
mod cluster;
// Garbage on every subject the roles consume, and bounded fuzzing of the parsers.
mod garbage;
