package bridge

import (
	"time"

	"github.com/trainyard-dev/trainyard/internal/wire"
)

// The wire types live in internal/wire, which the agent uses without the
// server; these names keep the bridge's code and its clients' reading as
// before.
type (
	Component        = wire.Component
	Version          = wire.Version
	ComponentVersion = wire.ComponentVersion
	Cluster          = wire.Cluster
	Error            = wire.Error
	DoctorReport     = wire.DoctorReport
)

// dataList is the {"data": [...]} envelope of list answers.
type dataList[T any] struct {
	Data []T `json:"data"`
}

// CheckinStat is one row of /v3/clusters/checkins and /persistent.
type CheckinStat struct {
	ClusterID   string    `json:"clusterID"`
	FirstSeen   time.Time `json:"firstSeen"`
	LastSeen    time.Time `json:"lastSeen"`
	Checkins    int64     `json:"checkins"`
	ClusterAge  string    `json:"clusterAge"`
	LastCheckin string    `json:"lastCheckin"`
}

// checkinList is the envelope of /v3/clusters/checkins and /persistent.
type checkinList struct {
	Count int           `json:"count"`
	Data  []CheckinStat `json:"data"`
}
