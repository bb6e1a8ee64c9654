package controllers

import (
	"github.com/trainyard-dev/trainyard/internal/index"
)

// The field indexes the controllers use live in internal/index, which the
// webhook and the bridge use as well; these names keep the controllers'
// own code and tests reading as before.
const (
	IndexReleaseTrain   = index.ReleaseTrain
	IndexReleaseVersion = index.ReleaseVersion
	IndexReportTrain    = index.ReportTrain
)

var (
	// VersionKey is index.VersionKey.
	VersionKey = index.VersionKey
	// SetupIndexes is index.Setup.
	SetupIndexes = index.Setup
)
