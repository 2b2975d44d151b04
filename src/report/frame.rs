//! A table as the report holds it: named, typed columns and rows of values. A report holds a few
//! thousand rows at most, read once from the store; plain vectors do that job, at a fraction of a
//! dataframe library's build time (polars made up 60% of a cold build of efen).

/// What a column holds. Times are ISO-8601 UTC text, as the store's query casts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Float,
    Bool,
    Time,
}

impl Kind {
    pub fn is_numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::Float)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v),
            Value::Int(v) => Some(v as f64),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Value {
        v.map_or(Value::Null, Value::Text)
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        v.map_or(Value::Null, Value::Int)
    }
}

impl From<Option<f64>> for Value {
    fn from(v: Option<f64>) -> Value {
        v.map_or(Value::Null, Value::Float)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

impl Frame {
    pub fn new(columns: &[(&str, Kind)]) -> Frame {
        let columns = columns.iter().map(|&(name, kind)| Column { name: name.into(), kind }).collect();
        Frame { columns, rows: Vec::new() }
    }

    pub fn height(&self) -> usize {
        self.rows.len()
    }

    /// Adds a row; it must have a value for every column.
    pub fn push(&mut self, row: Vec<Value>) {
        assert_eq!(row.len(), self.columns.len(), "a row has one value per column");
        self.rows.push(row);
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The value in row `i` of column `name` (Null when there is no such column).
    pub fn get(&self, i: usize, name: &str) -> &Value {
        self.index(name).and_then(|c| self.rows.get(i).map(|row| &row[c])).unwrap_or(&Value::Null)
    }

    pub fn text(&self, i: usize, name: &str) -> Option<&str> {
        self.get(i, name).as_str()
    }

    pub fn float(&self, i: usize, name: &str) -> Option<f64> {
        self.get(i, name).as_f64()
    }

    /// The rows for which `keep` holds, in order.
    pub fn filter(&self, keep: impl Fn(&Frame, usize) -> bool) -> Frame {
        let rows = (0..self.height()).filter(|&i| keep(self, i)).map(|i| self.rows[i].clone()).collect();
        Frame { columns: self.columns.clone(), rows }
    }

    /// The non-null numbers of a column, ascending.
    pub fn sorted_floats(&self, name: &str) -> Vec<f64> {
        let mut values: Vec<f64> = (0..self.height()).filter_map(|i| self.float(i, name)).collect();
        values.sort_by(f64::total_cmp);
        values
    }
}
