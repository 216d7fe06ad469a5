package nsfd

// PrivateSysctls says whether s's last write went through a procfs
// instance of its own.
func PrivateSysctls(s *Sysctls) bool { return s.mnt >= 0 }
