// Package web serves the web view under /ui/: the board of images by
// stage, each image's history and the ledger, verified in the browser
// (assets/verify.js) rather than trusted from this server, and the
// actions a person takes (revoke, approve, reject), which go through the
// promotion API unchanged so that the view adds no authority of its own.
package web
