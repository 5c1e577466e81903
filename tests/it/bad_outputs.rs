//! Outputs that cannot be used: a tile that is not an image, one of the wrong size and one
//! that declares 65,535² pixels each make their attempt a failed one at the collector —
//! retried while attempts remain, then failing the task with the reason — while the
//! collector stays up; an empty output, or a command's output of the wrong format or size,
//! fails its attempt on the worker, and so does an output the store will not take. And a
//! renderer that only redraws a progress line is alive.

use std::path::Path;

use tessera::bus::protocol::EventKind;

use crate::support::{Farm, command_farm, events_of, wait_event};

/// A PNG of `width`×`height`, grey.
fn png(path: &Path, width: u32, height: u32) {
    image::RgbImage::from_pixel(width, height, image::Rgb([90, 90, 90]))
        .save(path)
        .unwrap();
}

/// A valid PNG whose header declares 65,535 × 65,535 pixels (with a correct CRC).
fn huge_png(path: &Path) {
    png(path, 4, 4);
    let mut bytes = std::fs::read(path).unwrap();
    bytes[16..24].copy_from_slice(&[0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff]);
    let mut crc = !0u32;
    for &b in &bytes[12..29] {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    bytes[29..33].copy_from_slice(&(!crc).to_be_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// A 64×48 frame in 2×2 tiles of 32×24 whose command copies `first` on attempt 1 and
/// `later` after.
fn tile_job(farm: &Farm, id: &str, first: &Path, later: &Path) -> String {
    let script = "if [ \"$2\" = 1 ]; then cp \"$0\" \"$3\"; else cp \"$1\" \"$3\"; fi";
    let toml = format!(
        "id = \"{id}\"\nrenderer = \"command\"\n[image]\nwidth = 64\nheight = 48\n[tiles]\ngrid = [2, 2]\n[retry]\nmax_attempts = 2\n[settings]\ncheck_outputs = false\ncommand = [\"sh\", \"-c\", {script:?}, {first:?}, {later:?}, \"{{attempt}}\", \"{{output}}\"]\n",
    );
    farm.submit(id, &toml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tiles_fail_their_task_with_a_reason_and_the_collector_stays_up() {
    let (mut farm, deps) = command_farm(1, &[]).await;
    let dir = farm.dir.path().join("parts");
    std::fs::create_dir_all(&dir).unwrap();
    let (text, small, huge, good) = (
        dir.join("text.png"),
        dir.join("small.png"),
        dir.join("huge.png"),
        dir.join("good.png"),
    );
    std::fs::write(&text, "not an image at all").unwrap();
    png(&small, 8, 8);
    huge_png(&huge);
    png(&good, 32, 24);
    for (id, bad, says) in [
        ("not-png", &text, "not a PNG or EXR file"),
        ("too-small", &small, "is 8x8 pixels, not 32x24"),
        ("huge", &huge, "is 65535x65535 pixels, not 32x24"),
    ] {
        let job = tile_job(&farm, id, bad, bad);
        let failed = wait_event(&farm, &deps.js, &job, EventKind::JobFailed).await;
        let message = failed.message.unwrap_or_default();
        assert!(message.contains(says), "{id}: {message}");
        assert!(message.contains("cannot be assembled"), "{id}: {message}");
        let events = events_of(&farm, &job).await;
        let retried = events
            .iter()
            .filter(|e| e.kind == EventKind::TaskRetry)
            .filter_map(|e| e.message.as_deref())
            .any(|m| m.contains(says));
        assert!(
            retried,
            "{id}: the first bad attempt was retried with its reason"
        );
        assert!(farm.roles[1].running(), "{id}: the collector is still up");
    }
    // The collector still assembles good work, and a part bad on its first attempt only is
    // retried into a finished frame.
    let job = tile_job(&farm, "second-try", &text, &good);
    farm.wait_done(&job);
    let frame = farm.dir.path().join("second-try");
    let out = farm.cli(&["fetch", &job, "-o", frame.to_str().unwrap()]);
    assert!(out.status.success());
    let image = image::open(frame.join("frame_0001.png")).unwrap();
    assert_eq!((image.width(), image.height()), (64, 48));
}

/// A command's outputs are checked on the worker like any renderer's: a text file or a PNG
/// of the wrong size fails the attempt with what is wrong, and a right one is the frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commands_output_of_the_wrong_format_or_size_fails_its_attempt() {
    let (farm, deps) = command_farm(1, &[]).await;
    let dir = farm.dir.path().join("outs");
    std::fs::create_dir_all(&dir).unwrap();
    let (text, small, right) = (
        dir.join("a.txt"),
        dir.join("small.png"),
        dir.join("right.png"),
    );
    std::fs::write(&text, "not an image").unwrap();
    png(&small, 8, 8);
    png(&right, 40, 30);
    for (id, file, says) in [
        (
            "text-out",
            &text,
            "output frame_0001.png is not an image (expected png)",
        ),
        (
            "small-out",
            &small,
            "output frame_0001.png is 8x8 pixels, not 40x30",
        ),
        ("right-out", &right, ""),
    ] {
        let toml = format!(
            "id = \"{id}\"\nrenderer = \"command\"\n[image]\nwidth = 40\nheight = 30\n[retry]\nmax_attempts = 1\n[settings]\ncommand = [\"cp\", {file:?}, \"{{output}}\"]\n"
        );
        let job = farm.submit(id, &toml);
        if says.is_empty() {
            farm.wait_done(&job);
            continue;
        }
        let failed = wait_event(&farm, &deps.js, &job, EventKind::TaskFailed).await;
        let message = failed.message.unwrap_or_default();
        assert!(message.contains(says), "{id}: {message}");
    }
}

/// An output is uploaded by its attempt's report, while the slot takes its next task; one
/// the store will not take fails the attempt all the same: its start is reported before
/// the failure, its log says why, and the next attempt, under keys of its own, is the
/// frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_the_store_will_not_take_fails_its_attempt_and_the_next_one_is_the_frame() {
    let (farm, deps) = command_farm(1, &[]).await;
    let right = farm.dir.path().join("right.png");
    png(&right, 40, 30);
    // The first attempt's output folder is taken by a file: the store cannot write there.
    let tasks = farm.dir.path().join("store/jobs/blocked-out/tasks/f0001");
    std::fs::create_dir_all(&tasks).unwrap();
    std::fs::write(tasks.join("attempt-1"), "in the way").unwrap();
    let toml = format!(
        "id = \"blocked-out\"\nrenderer = \"command\"\n[image]\nwidth = 40\nheight = 30\n[retry]\nmax_attempts = 2\n[settings]\ncommand = [\"cp\", {right:?}, \"{{output}}\"]\n"
    );
    let job = farm.submit("blocked-out", &toml);
    farm.wait_done(&job);
    // As stored, not as the tests' support rebuilds folded starts.
    let events = tessera::roles::client::events(&deps.js, &job)
        .await
        .unwrap();
    let at = |kind: EventKind, attempt: u32| {
        events
            .iter()
            .position(|e| e.kind == kind && e.attempt == Some(attempt))
            .unwrap_or_else(|| panic!("no {kind:?} of attempt {attempt}: {events:#?}"))
    };
    let retry = &events[at(EventKind::TaskRetry, 1)];
    let message = retry.message.clone().unwrap_or_default();
    assert!(
        message.contains("uploading jobs/blocked-out/tasks/f0001/attempt-1/"),
        "{message}"
    );
    assert!(at(EventKind::TaskStarted, 1) < at(EventKind::TaskRetry, 1));
    assert!(at(EventKind::TaskRetry, 1) < at(EventKind::TaskDone, 2));
    let id = tessera::core::job::JobId::parse(&job).unwrap();
    let log_key =
        tessera::store::keys::attempt_log(&id, &tessera::core::plan::TaskId("f0001".into()), 1);
    let log = deps.store.get(&log_key).await.unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("attempt failed: uploading"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_output_fails_its_attempt_with_the_reason() {
    let (farm, deps) = command_farm(1, &[]).await;
    let toml = "id = \"empty-out\"\nrenderer = \"command\"\n[retry]\nmax_attempts = 1\n[settings]\ncommand = [\"sh\", \"-c\", \": > \\\"$0\\\"\", \"{output}\"]\n";
    let job = farm.submit("empty-out", toml);
    let failed = wait_event(&farm, &deps.js, &job, EventKind::TaskFailed).await;
    let message = failed.message.unwrap_or_default();
    assert!(
        message.contains("output frame_0001.png is empty (0 bytes)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renderer_redrawing_its_progress_line_is_not_taken_for_hung() {
    let (farm, _deps) = command_farm(1, &[]).await;
    // Prints only `\r`-ended progress for 3 s, against a stall limit of 1 s.
    let script =
        "for i in 1 2 3 4 5 6; do printf 'progress %d\\r' $i; sleep 0.5; done; echo ok > \"$0\"";
    let toml = format!(
        "id = \"redraws\"\nrenderer = \"command\"\n[retry]\nmax_attempts = 1\nstall = \"1s\"\n[settings]\ncheck_outputs = false\ncommand = [\"sh\", \"-c\", {script:?}, \"{{output}}\"]\n"
    );
    let job = farm.submit("redraws", &toml);
    farm.wait_done(&job);
}
