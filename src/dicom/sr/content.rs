//! SR content items (PS3.3 C.17.3) as dicom-rs data sets: each item is a relationship, a value
//! type, a concept name and its value; a CONTAINER holds its children in a Content Sequence.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::super::Code;

/// How an item relates to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Contains,
    HasConceptMod,
    HasObsContext,
}

impl Relation {
    fn as_str(self) -> &'static str {
        match self {
            Relation::Contains => "CONTAINS",
            Relation::HasConceptMod => "HAS CONCEPT MOD",
            Relation::HasObsContext => "HAS OBS CONTEXT",
        }
    }
}

/// A reference to a composite object in an IMAGE item: its class and instance, and optionally a
/// frame and a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub class: String,
    pub instance: String,
    pub frame: Option<u32>,
    pub segment: Option<u16>,
}

pub fn item(fill: impl FnOnce(&mut InMemDicomObject)) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    fill(&mut obj);
    obj
}

pub fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

pub fn text(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// A Code Sequence item (Code Value, Coding Scheme Designator, Code Meaning).
pub fn code_item(code: &Code) -> InMemDicomObject {
    item(|o| {
        o.put(text(tags::CODE_VALUE, VR::SH, &code.value));
        o.put(text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, &code.scheme));
        o.put(text(tags::CODE_MEANING, VR::LO, &code.meaning));
    })
}

fn named(relation: Option<Relation>, value_type: &str, name: &Code) -> InMemDicomObject {
    item(|o| {
        if let Some(relation) = relation {
            o.put(text(tags::RELATIONSHIP_TYPE, VR::CS, relation.as_str()));
        }
        o.put(text(tags::VALUE_TYPE, VR::CS, value_type));
        o.put(seq(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![code_item(name)]));
    })
}

/// A CONTAINER (separate items), with its template when it has one.
pub fn container(
    relation: Option<Relation>,
    name: &Code,
    template: Option<&str>,
    children: Vec<InMemDicomObject>,
) -> InMemDicomObject {
    let mut o = named(relation, "CONTAINER", name);
    o.put(text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
    if let Some(id) = template {
        o.put(seq(
            tags::CONTENT_TEMPLATE_SEQUENCE,
            vec![item(|t| {
                t.put(text(tags::MAPPING_RESOURCE, VR::CS, "DCMR"));
                t.put(text(tags::TEMPLATE_IDENTIFIER, VR::CS, id));
            })],
        ));
    }
    if !children.is_empty() {
        o.put(seq(tags::CONTENT_SEQUENCE, children));
    }
    o
}

pub fn code(relation: Relation, name: &Code, value: &Code) -> InMemDicomObject {
    let mut o = named(Some(relation), "CODE", name);
    o.put(seq(tags::CONCEPT_CODE_SEQUENCE, vec![code_item(value)]));
    o
}

pub fn text_item(relation: Relation, name: &Code, value: &str) -> InMemDicomObject {
    let mut o = named(Some(relation), "TEXT", name);
    o.put(text(tags::TEXT_VALUE, VR::UT, value));
    o
}

pub fn uidref(relation: Relation, name: &Code, uid: &str) -> InMemDicomObject {
    let mut o = named(Some(relation), "UIDREF", name);
    o.put(text(tags::UID, VR::UI, uid));
    o
}

/// A NUM item: the value as a decimal string (DS, 16 characters) and, since DS rounds, also as a
/// 64-bit float (Floating Point Value).
pub fn num(name: &Code, value: f64, unit: &Code) -> InMemDicomObject {
    let mut o = named(Some(Relation::Contains), "NUM", name);
    o.put(seq(
        tags::MEASURED_VALUE_SEQUENCE,
        vec![item(|m| {
            m.put(seq(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![code_item(unit)]));
            m.put(DataElement::new(
                tags::NUMERIC_VALUE,
                VR::DS,
                PrimitiveValue::from(super::super::seg::format_ds(value)),
            ));
            m.put(DataElement::new(tags::FLOATING_POINT_VALUE, VR::FD, PrimitiveValue::from(value)));
        })],
    ));
    o
}

pub fn image(name: &Code, reference: &ImageRef) -> InMemDicomObject {
    let mut o = named(Some(Relation::Contains), "IMAGE", name);
    o.put(seq(
        tags::REFERENCED_SOP_SEQUENCE,
        vec![item(|r| {
            r.put(text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &reference.class));
            r.put(text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &reference.instance));
            if let Some(frame) = reference.frame {
                r.put(DataElement::new(tags::REFERENCED_FRAME_NUMBER, VR::IS, PrimitiveValue::from(frame.to_string())));
            }
            if let Some(segment) = reference.segment {
                r.put(DataElement::new(tags::REFERENCED_SEGMENT_NUMBER, VR::US, PrimitiveValue::from(segment)));
            }
        })],
    ));
    o
}
