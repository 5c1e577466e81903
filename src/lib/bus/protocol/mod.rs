//! Every type that crosses NATS, and the only place subjects are built.
//!
//! Internal messages are msgpack (`rmp_serde::to_vec_named`, so fields travel by name and
//! optional ones may be absent) with the header `Content-Type: application/msgpack`; every
//! message carries a `schema` version. Job submissions may be JSON too (see [`crate::core::job`]).
//!
//! Subjects:
//!
//! | subject | what |
//! | --- | --- |
//! | `tessera.jobs.submit` | job submissions (stream `TESSERA_JOBS`) |
//! | `tessera.tasks.<class>.<priority>.<job>.<renderer>` | tasks (stream `TESSERA_TASKS`) |
//! | `tessera.events.<job>.<kind>` | events, `<kind>` like `task.done` (stream `TESSERA_EVENTS`, which stores them as `tessera.events.<partition>.<job>.<kind>`) |
//! | `tessera.control.<job>` | core NATS: cancel running renders of a job |
//! | `tessera.doorbell.<class>` | core NATS: tasks were queued for a class; wakes idle workers |
//!
//! - [`subjects`]: every subject and consumer name, built and parsed here only;
//! - [`messages`]: the task, the event, the advisory and the worker entry.

pub mod messages;
pub mod subjects;

pub use messages::*;
pub use subjects::*;

use serde::Serialize;

use crate::core::problem::FieldError;

/// Version of the internal message schemas.
pub const SCHEMA: u32 = 1;
/// The job token used in events about a submission whose id could not be read.
pub const INVALID_JOB_TOKEN: &str = "_invalid";
/// Content type of internal messages.
pub const MSGPACK: &str = "application/msgpack";
/// Content type of JSON submissions.
pub const JSON: &str = "application/json";

/// Encodes an internal message.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("internal messages always serialise")
}

/// Decodes an internal message, with the path of the field that failed.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    let mut de = rmp_serde::Deserializer::new(bytes);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| FieldError::new(e.path().to_string(), e.into_inner().to_string()))
}

/// Headers for an internal message, with an optional `Nats-Msg-Id`.
pub fn headers(msg_id: Option<&str>) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", MSGPACK);
    if let Some(id) = msg_id {
        headers.insert("Nats-Msg-Id", id);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::job::{Class, JobId, Priority, RendererKind};

    #[test]
    fn builds_subjects() {
        let job = JobId::parse("j1").unwrap();
        let cpu = Class::cpu();
        let noop = RendererKind::Noop;
        let subject = task_subject(&cpu, Priority::High, &job, noop, false);
        assert_eq!(subject, "tessera.tasks.cpu.high.j1.noop");
        let key = task_subject(&cpu, Priority::High, &job, noop, true);
        assert_eq!(key, "tessera.tasks.cpu.high.j1.noop.key");
        assert!(is_key_task_subject(&key) && !is_key_task_subject(&subject));
        assert_eq!(
            key_filter(&cpu, Priority::High, noop),
            "tessera.tasks.cpu.high.*.noop.key"
        );
        for s in [&subject, &key] {
            assert_eq!(
                parse_task_queue(s),
                Some((cpu.clone(), Priority::High, noop))
            );
            assert_eq!(parse_task_job(s), Some(job.clone()));
        }
        let keys = key_consumer(&cpu, Priority::Normal, noop);
        assert_eq!(keys, "keys-cpu-normal-noop");
        assert_eq!(parse_task_consumer(&keys), None);
        assert_eq!(
            parse_any_task_consumer(&keys),
            Some((cpu.clone(), Priority::Normal, noop))
        );
        let filter = task_filter(&cpu, Priority::Low, noop);
        assert_eq!(filter, "tessera.tasks.cpu.low.*.noop");
        let consumer = task_consumer(&cpu, Priority::Normal, noop);
        assert_eq!(consumer, "tasks-cpu-normal-noop");
        assert_eq!(
            parse_task_consumer(&consumer),
            Some((cpu.clone(), Priority::Normal, noop))
        );
        let gpu_big = Class::parse("gpu-big").unwrap();
        let name = task_consumer(&gpu_big, Priority::High, RendererKind::Blender);
        assert_eq!(
            parse_task_consumer(&name),
            Some((gpu_big, Priority::High, RendererKind::Blender))
        );
        assert_eq!(parse_task_consumer("planner"), None);
        let ack = "$JS.ACK.TESSERA_TASKS.tasks-cpu-normal-noop.1.42.7.1764440000000000000.3";
        assert!(is_task_ack_subject(ack, "TESSERA_TASKS"));
        let v2 = "$JS.ACK.hub.ACCHASH.TESSERA_TASKS.tasks-cpu-normal-noop.1.42.7.1764440000.3.tok";
        assert!(is_task_ack_subject(v2, "TESSERA_TASKS"));
        let key_ack = "$JS.ACK.TESSERA_TASKS.keys-cpu-normal-noop.1.42.7.1764440000000000000.3";
        assert!(is_task_ack_subject(key_ack, "TESSERA_TASKS"));
        for bad in [
            "tessera.jobs.submit",
            "$JS.ACK.TESSERA_JOBS.planner.1.2.3.4.0",
            "$JS.ACK.TESSERA_TASKS.collector.1.2.3.4.0",
            "$JS.ACK.TESSERA_TASKS.tasks-cpu-normal-noop.>",
        ] {
            assert!(!is_task_ack_subject(bad, "TESSERA_TASKS"), "{bad}");
        }
        let event = event_subject("j1", EventKind::TaskDone);
        assert_eq!(event, "tessera.events.j1.task.done");
        assert_eq!(parse_event_kind(&event), Some(EventKind::TaskDone));
        assert_eq!(
            parse_event_kind("tessera.events.j1.job.done"),
            Some(EventKind::JobDone)
        );
        assert_eq!(parse_event_kind("tessera.events.j1.job.gone"), None);
        assert_eq!(parse_event_kind("tessera.tasks.j1.job.done"), None);
        assert_eq!(
            job_record_subjects("tessera-jobs", &job),
            ["$KV.tessera-jobs.j1", "$KV.tessera-jobs.j1.>"]
        );
        let task = crate::core::plan::TaskId("f0001".into());
        let round = |generation, withdrawals| crate::core::state::Round {
            generation,
            withdrawals,
        };
        assert_eq!(task_msg_id(&job, "inc", &task, round(0, 0)), "j1:inc:f0001");
        assert_eq!(
            task_msg_id(&job, "inc", &task, round(2, 0)),
            "j1:inc:f0001:r2"
        );
        assert_eq!(
            task_msg_id(&job, "inc", &task, round(0, 1)),
            "j1:inc:f0001:w1"
        );
        assert_eq!(
            task_msg_id(&job, "inc", &task, round(2, 3)),
            "j1:inc:f0001:r2:w3"
        );
        assert_eq!(job_tasks_filter(&job), "tessera.tasks.*.*.j1.>");
        assert_eq!(
            parse_task_subject(&subject),
            Some((cpu.clone(), Priority::High))
        );
        assert_eq!(parse_task_subject("tessera.events.j1.task.done"), None);
        assert_eq!(parse_task_job(&subject), Some(job.clone()));
        assert_eq!(parse_task_job("tessera.events.j1.task.done"), None);
        for key in [false, true] {
            assert_eq!(
                parse_doorbell_hint(doorbell_hint(Priority::Low, noop, key).as_bytes()),
                Some((Priority::Low, noop, key))
            );
        }
        assert_eq!(doorbell_hint(Priority::Low, noop, true), "low.noop.key");
        assert_eq!(parse_doorbell_hint(b"urgent.noop"), None);
    }

    #[test]
    fn event_partitions_hash_the_job_id_as_the_server_does() {
        // FNV-1a (32 bits) of the job id, modulo the partitions.
        for (job, hash) in [("a", 0xe40c_292c_u32), ("foobar", 0xbf9c_f968)] {
            assert_eq!(event_partition(job), hash % EVENT_PARTITIONS, "{job}");
        }
        assert_eq!(
            stored_event_subject("a", EventKind::JobDone),
            "tessera.events.4.a.job.done"
        );
        assert_eq!(partition_events_filter(4), "tessera.events.4.>");
        let stream: serde_json::Value =
            serde_json::from_str(include_str!("../../../../streams/TESSERA_EVENTS.json")).unwrap();
        let dest = stream["subject_transform"]["dest"].as_str().unwrap();
        assert!(
            dest.contains(&format!("partition({EVENT_PARTITIONS},1)")),
            "{dest}"
        );
    }

    #[test]
    fn events_round_trip() {
        let mut event = Event::new(EventKind::JobRejected, "j1");
        event
            .reasons
            .push(FieldError::new("frames.range", "is empty"));
        let back: Event = decode(&encode(&event)).unwrap();
        assert_eq!(back, event);
        let err = decode::<Event>(b"\x80").unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }
}
