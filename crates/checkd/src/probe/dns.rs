//! `dns`: one query over UDP. Healthy when the answer has the right id,
//! NOERROR, and a record of the asked type (containing `receive`, if given,
//! in its text form: `198.51.100.21`, `mail.example.org.`).

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::{Dial, ProbeError, io_error};
use crate::expect::Expect;

/// Queries `name`/`record_type` where `dial` says.
pub async fn probe(
    dial: &Dial,
    name: &Name,
    record_type: RecordType,
    expect: Option<&Expect>,
) -> Result<(), ProbeError> {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(hickory_proto::op::Query::query(name.clone(), record_type));
    let id = query.metadata.id;
    let bytes = query
        .to_vec()
        .map_err(|e| ProbeError::Unprobeable(format!("query: {e}")))?;

    let socket = super::udp::connect(dial).await?;
    socket.send(&bytes).await.map_err(io_error("send"))?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io_error("receive"))?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            return Err(ProbeError::Dns("malformed reply".into()));
        };
        if reply.metadata.id != id || reply.metadata.message_type != MessageType::Response {
            continue;
        }
        return check_reply(&reply, record_type, expect);
    }
}

fn check_reply(
    reply: &Message,
    record_type: RecordType,
    expect: Option<&Expect>,
) -> Result<(), ProbeError> {
    let code = reply.metadata.response_code;
    if code != ResponseCode::NoError {
        return Err(ProbeError::Dns(format!("response code {code}")));
    }
    let answers: Vec<String> = reply
        .answers
        .iter()
        .filter(|r| r.record_type() == record_type)
        .map(|r| r.data.to_string())
        .collect();
    if answers.is_empty() {
        return Err(ProbeError::Dns(format!(
            "no {record_type} record in the answer"
        )));
    }
    match expect {
        Some(expect) if !answers.iter().any(|a| expect.matches(a.as_bytes())) => {
            Err(ProbeError::Dns(format!(
                "no {record_type} answer does {expect} (got {})",
                answers.join(", ")
            )))
        }
        _ => Ok(()),
    }
}
