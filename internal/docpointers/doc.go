// Package docpointers holds the test that every pointer into nsrun's
// documentation resolves: a message or comment that says
// `see README: "Section"` names a heading of README.md, one that names
// docs/x.md names a file that exists, and the links of README.md and
// docs/*.md lead to files and headings that exist. It has no code of its
// own.
package docpointers
