# SPDX-License-Identifier: GPL-2.0-or-later
# The schedule of systraq(8) where systemd does not run.  Under systemd
# the timers systraq-contents.timer, systraq-check.timer and
# systraq-report.timer run these jobs, and every line here does nothing,
# so that exactly one scheduler runs a job.  This file is a conffile and
# stays after "apt remove": each line also checks that systraq is still
# installed.  The jobs print nothing on success and mail their own
# reports, so mail from cron carries only errors.
#
# Each job runs as gently as its systemd unit: nice 10, and I/O in the
# best-effort class at its lowest priority (ionice is util-linux's, which
# is Essential on every release systraq supports; -t runs the job even
# where the I/O class cannot be set, as in some containers).

# Backups and diffs of world-readable configuration, every half hour, as
# the systraq user (20 and 50 past: apart from the hourly check).
20,50 * * * *	debian-systraq	[ -d /run/systemd/system ] || [ ! -x /usr/sbin/systraq ] || nice -n 10 ionice -t -c 2 -n 7 /usr/sbin/systraq contents

# Snapshot and contents of the root and pub modes, and an alert mailed at
# once for critical changes, hourly (root drops to debian-systraq for the
# pub modes).
5 * * * *	root	[ -d /run/systemd/system ] || [ ! -x /usr/sbin/systraq ] || nice -n 10 ionice -t -c 2 -n 7 /usr/sbin/systraq check

# The daily report, after the root checks, the packages check (which
# runs as debian-systraq), when [packages] from_archive = yes the check
# against the archive, and the local digests; a failure of one does not
# stop the report.
35 6 * * *	root	[ -d /run/systemd/system ] || [ ! -x /usr/sbin/systraq ] || { nice -n 10 ionice -t -c 2 -n 7 /usr/sbin/systraq audit; nice -n 10 ionice -t -c 2 -n 7 /usr/sbin/systraq packages; nice -n 10 ionice -t -c 2 -n 7 /usr/sbin/systraq packages --from-archive --scheduled; nice -n 10 ionice -t -c 2 -n 7 /usr/sbin/systraq localsums; nice -n 10 ionice -t -c 2 -n 7 /usr/sbin/systraq report; }
