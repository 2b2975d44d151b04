//! DIMSE command sets (PS3.7 §9, §E): the few elements of group 0000 that C-ECHO and C-STORE use,
//! encoded and decoded by hand. Command sets are always Implicit VR Little Endian.

use std::collections::BTreeMap;

pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// Command Field (0000,0100) values.
pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;

/// Command Data Set Type (0000,0800): no data set follows.
pub const NO_DATA_SET: u16 = 0x0101;

/// Status (0000,0900) values, shared with STOW-RS's Failure Reason.
pub use crate::dicom::status;

const AFFECTED_SOP_CLASS: u16 = 0x0002;
const COMMAND_FIELD: u16 = 0x0100;
const MESSAGE_ID: u16 = 0x0110;
const MESSAGE_ID_RESPONDED: u16 = 0x0120;
const PRIORITY: u16 = 0x0700;
const DATA_SET_TYPE: u16 = 0x0800;
const STATUS: u16 = 0x0900;
const AFFECTED_SOP_INSTANCE: u16 = 0x1000;
const ERROR_COMMENT: u16 = 0x0902;

#[derive(Debug, thiserror::Error)]
#[error("malformed DIMSE command set: {0}")]
pub struct CommandError(String);

/// A command set: element number (group 0000) → raw value bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    elements: BTreeMap<u16, Vec<u8>>,
}

impl Command {
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
        let mut elements = BTreeMap::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let header = bytes.get(at..at + 8).ok_or_else(|| CommandError(format!("truncated header at {at}")))?;
            let group = u16::from_le_bytes([header[0], header[1]]);
            let element = u16::from_le_bytes([header[2], header[3]]);
            let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if group != 0x0000 {
                return Err(CommandError(format!("element ({group:04X},{element:04X}) is outside group 0000")));
            }
            let value = bytes
                .get(at + 8..at + 8 + length)
                .ok_or_else(|| CommandError(format!("element (0000,{element:04X}) runs past the end")))?;
            elements.insert(element, value.to_vec());
            at += 8 + length;
        }
        Ok(Command { elements })
    }

    /// Implicit VR Little Endian, with the Command Group Length first.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (element, value) in self.elements.iter().filter(|(e, _)| **e != 0x0000) {
            body.extend_from_slice(&0u16.to_le_bytes());
            body.extend_from_slice(&element.to_le_bytes());
            body.extend_from_slice(&(value.len() as u32).to_le_bytes());
            body.extend_from_slice(value);
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn set_us(&mut self, element: u16, value: u16) -> &mut Self {
        self.elements.insert(element, value.to_le_bytes().to_vec());
        self
    }

    fn set_ui(&mut self, element: u16, uid: &str) -> &mut Self {
        let mut value = uid.as_bytes().to_vec();
        if value.len() % 2 == 1 {
            value.push(0);
        }
        self.elements.insert(element, value);
        self
    }

    fn us(&self, element: u16) -> Option<u16> {
        let value = self.elements.get(&element)?;
        Some(u16::from_le_bytes([*value.first()?, *value.get(1)?]))
    }

    fn ui(&self, element: u16) -> Option<String> {
        let value = self.elements.get(&element)?;
        let text = String::from_utf8_lossy(value);
        Some(text.trim_end_matches(['\0', ' ']).to_string())
    }

    pub fn command_field(&self) -> Option<u16> {
        self.us(COMMAND_FIELD)
    }
    pub fn message_id(&self) -> Option<u16> {
        self.us(MESSAGE_ID)
    }
    pub fn status(&self) -> Option<u16> {
        self.us(STATUS)
    }
    pub fn affected_sop_class(&self) -> Option<String> {
        self.ui(AFFECTED_SOP_CLASS)
    }
    pub fn affected_sop_instance(&self) -> Option<String> {
        self.ui(AFFECTED_SOP_INSTANCE)
    }
    pub fn error_comment(&self) -> Option<String> {
        self.ui(ERROR_COMMENT)
    }
    /// Whether a data set follows this command.
    pub fn has_data_set(&self) -> bool {
        self.us(DATA_SET_TYPE).is_some_and(|t| t != NO_DATA_SET)
    }

    pub fn c_store_rq(message_id: u16, sop_class: &str, sop_instance: &str) -> Command {
        let mut command = Command::default();
        command
            .set_ui(AFFECTED_SOP_CLASS, sop_class)
            .set_us(COMMAND_FIELD, C_STORE_RQ)
            .set_us(MESSAGE_ID, message_id)
            .set_us(PRIORITY, 0)
            .set_us(DATA_SET_TYPE, 0x0000)
            .set_ui(AFFECTED_SOP_INSTANCE, sop_instance);
        command
    }

    pub fn c_store_rsp(request: &Command, status: u16) -> Command {
        let mut command = Command::default();
        command
            .set_ui(AFFECTED_SOP_CLASS, &request.affected_sop_class().unwrap_or_default())
            .set_us(COMMAND_FIELD, C_STORE_RSP)
            .set_us(MESSAGE_ID_RESPONDED, request.message_id().unwrap_or(0))
            .set_us(DATA_SET_TYPE, NO_DATA_SET)
            .set_us(STATUS, status)
            .set_ui(AFFECTED_SOP_INSTANCE, &request.affected_sop_instance().unwrap_or_default());
        command
    }

    pub fn c_echo_rsp(request: &Command) -> Command {
        let mut command = Command::default();
        command
            .set_ui(AFFECTED_SOP_CLASS, VERIFICATION)
            .set_us(COMMAND_FIELD, C_ECHO_RSP)
            .set_us(MESSAGE_ID_RESPONDED, request.message_id().unwrap_or(0))
            .set_us(DATA_SET_TYPE, NO_DATA_SET)
            .set_us(STATUS, status::SUCCESS);
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_request_round_trips_and_its_response_answers_it() {
        let request = Command::c_store_rq(7, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5");
        let bytes = request.encode();
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 4, 0, 0, 0], "group length first");
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, bytes.len() - 12);
        let decoded = Command::decode(&bytes).unwrap();
        assert_eq!(decoded.command_field(), Some(C_STORE_RQ));
        assert_eq!(decoded.message_id(), Some(7));
        assert_eq!(decoded.affected_sop_instance().as_deref(), Some("1.2.3.4.5"), "padding removed");
        assert!(decoded.has_data_set());

        let response = Command::decode(&Command::c_store_rsp(&decoded, status::OUT_OF_RESOURCES).encode()).unwrap();
        assert_eq!(response.command_field(), Some(C_STORE_RSP));
        assert_eq!(response.status(), Some(0xA700));
        assert_eq!(response.us(MESSAGE_ID_RESPONDED), Some(7));
        assert!(!response.has_data_set());
    }

    #[test]
    fn truncated_commands_are_refused() {
        let bytes = Command::c_store_rq(1, "1.2", "3.4").encode();
        assert!(Command::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Command::decode(&[8, 0, 0x16, 0, 2, 0, 0, 0, b'1', 0]).is_err(), "group 0008 is not a command");
    }

    #[test]
    fn warnings_count_as_stored() {
        assert!(status::is_stored(0x0000) && status::is_stored(0xB000) && status::is_stored(0x0001));
        assert!(!status::is_stored(0xA700) && !status::is_stored(0xC000));
    }
}
