package plugin

// ContinueOf is continueOf, for the tests.
var ContinueOf = continueOf
