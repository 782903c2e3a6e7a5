//! Events to containerd, in order, from one thread: a request handler never waits on
//! containerd (which may itself be waiting on the shim, or restarting).

use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, SystemTime};

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::ttrpc::context::with_duration;
use containerd_shim::publisher::RemotePublisher;

#[derive(Clone)]
pub struct Events {
    tx: Sender<(String, Box<dyn MessageDyn>)>,
}

impl Events {
    pub fn start(publisher: RemotePublisher, namespace: String) -> Events {
        let (tx, rx) = channel::<(String, Box<dyn MessageDyn>)>();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                for (topic, event) in rx {
                    // containerd may be down for a while (a restart): retry, in order.
                    for attempt in 0..20 {
                        let ctx = with_duration(Duration::from_secs(5));
                        match publisher.publish(ctx, &topic, &namespace, event.clone_box()) {
                            Ok(()) => break,
                            Err(e) => {
                                log::warn!("publish {topic} (attempt {attempt}): {e}");
                                std::thread::sleep(Duration::from_millis(250));
                            }
                        }
                    }
                }
            })
            .expect("thread spawn");
        Events { tx }
    }

    pub fn send<E: Event + MessageDyn + 'static>(&self, event: E) {
        let _ = self.tx.send((event.topic(), Box::new(event)));
    }
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}
