package Test::Nginx::Util;

# Server-side plumbing for our minimal Test::Nginx-compatible harness:
# settings (environment variables and the configuration functions such as
# workers() / master_on() / log_level()), the server root layout, nginx.conf
# generation, and starting / stopping the nginx process.
#
# The HTTP client side and the per-block expectations live in
# Test::Nginx::Socket.  See the POD there for the supported subset.
#
# This is an independent implementation written against the documented
# behaviour of CPAN's Test::Nginx; it shares no code with it.

use strict;
use warnings;

use Cwd ();
use Exporter ();
use File::Path ();
use File::Spec ();
use POSIX ();
use Test::More ();
use Time::HiRes ();

our @ISA = ('Exporter');

our @EXPORT = qw(
    repeat_each workers master_on master_off log_level no_long_string
    no_shuffle no_root_location config_preamble server_name server_port
    server_root html_dir env_to_nginx check_accum_error_log no_nginx_manager
    add_cleanup_handler bail_out
    $ServerPort $ServRoot $HtmlDir $LogDir $ConfDir $ConfFile $PidFile
    $ErrLogFile $AccLogFile $NginxBinary $RepeatEach $NoLongString
);

# Internals used by Test::Nginx::Socket.
our @EXPORT_OK = qw(
    expand_env_in_text parse_time slurp_file find_nginx_binary
    setup_server_root truncate_logs write_user_files write_config_file
    start_nginx stop_nginx nginx_alive cleanup
    $NoNginxManager $CheckAccumErrLog
);

# ---------------------------------------------------------------------------
# Settings (overridable from the environment, like the real Test::Nginx)
# ---------------------------------------------------------------------------

our $NginxBinary = $ENV{TEST_NGINX_BINARY} || 'nginx';

our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                  || 1984;
$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;

our $ServRoot = $ENV{TEST_NGINX_SERVROOT}
                || File::Spec->catdir(Cwd::cwd() || '.', 't', 'servroot');
$ServRoot = File::Spec->rel2abs($ServRoot);

our $HtmlDir    = File::Spec->catdir($ServRoot, 'html');
our $LogDir     = File::Spec->catdir($ServRoot, 'logs');
our $ConfDir    = File::Spec->catdir($ServRoot, 'conf');
our $ConfFile   = File::Spec->catfile($ConfDir, 'nginx.conf');
our $PidFile    = File::Spec->catfile($LogDir, 'nginx.pid');
our $ErrLogFile = File::Spec->catfile($LogDir, 'error.log');
our $AccLogFile = File::Spec->catfile($LogDir, 'access.log');

# Files we keep nginx's own stdout/stderr of the start command in.
our $StartOutFile = File::Spec->catfile($LogDir, 'nginx-start.out');

# Exported to the blocks ($TEST_NGINX_HTML_DIR substitution and %ENV in
# "eval" sections), as the real module does at load time.
$ENV{TEST_NGINX_HTML_DIR} ||= $HtmlDir;

our $RepeatEach        = 1;
our $Workers           = 1;
our $MasterProcess     = 'off';
our $LogLevel          = 'debug';
our $NoLongString      = 0;
our $NoRootLocation    = 0;
our $ConfigPreamble    = '';
our $ServerName        = 'localhost';
our $CheckAccumErrLog  = 0;
our $NoNginxManager    = $ENV{TEST_NGINX_NO_NGINX_MANAGER} ? 1 : 0;
our @EnvToNginx        = qw(LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS);
our @CleanupHandlers;

# "worker_connections" of the generated events {} block.
our $WorkerConnections = 64;

sub repeat_each {
    if (@_) {
        $RepeatEach = shift;
    }
    return $RepeatEach;
}

sub workers        { $Workers = shift if @_; return $Workers }
sub master_on      { $MasterProcess = 'on' }
sub master_off     { $MasterProcess = 'off' }
sub log_level      { $LogLevel = shift if @_; return $LogLevel }
sub no_long_string { $NoLongString = 1 }
sub no_root_location { $NoRootLocation = 1 }
sub config_preamble  { $ConfigPreamble = shift if @_; return $ConfigPreamble }
sub server_name    { $ServerName = shift if @_; return $ServerName }
sub server_port    { $ServerPort = shift if @_; return $ServerPort }
sub server_root    { return $ServRoot }
sub html_dir       { return $HtmlDir }
sub check_accum_error_log { $CheckAccumErrLog = 1 }
sub no_nginx_manager      { $NoNginxManager = 1 }

# The real harness shuffles blocks unless told not to; we always keep the
# file order, so this is a no-op kept for source compatibility.
sub no_shuffle { 1 }

sub env_to_nginx { push @EnvToNginx, @_ }

sub add_cleanup_handler {
    my $code = shift;
    die "add_cleanup_handler: code reference expected\n"
        unless ref $code eq 'CODE';
    push @CleanupHandlers, $code;
}

sub bail_out {
    my $msg = join '', @_;
    cleanup();
    Test::More::BAIL_OUT($msg);
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

sub verbose { $ENV{TEST_NGINX_VERBOSE} }

sub diag_verbose {
    Test::More::diag(@_) if verbose();
}

# Expand $TEST_NGINX_FOO (and ${TEST_NGINX_FOO}) from %ENV.  An undefined
# variable aborts the run, like the real harness does.
sub expand_env_in_text {
    my ($text, $what) = @_;
    return $text unless defined $text;
    $text =~ s{\$(?:\{(TEST_NGINX_[_A-Z0-9]+)\}|(TEST_NGINX_[_A-Z0-9]+))}{
        my $name = defined $1 ? $1 : $2;
        if (!defined $ENV{$name}) {
            bail_out("No environment $name defined"
                     . (defined $what ? " (used in $what)" : '') . ".\n");
        }
        $ENV{$name};
    }ge;
    return $text;
}

# Parse "1.5", "2s", "50ms" into seconds.
sub parse_time {
    my $v = shift;
    return undef unless defined $v;
    $v =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $v =~ /^(\d+(?:\.\d+)?)ms$/;
    return $1        if $v =~ /^(\d+(?:\.\d+)?)s?$/;
    die "Bad time value: '$v'\n";
}

sub slurp_file {
    my $file = shift;
    open my $in, '<:raw', $file or return undef;
    local $/;
    my $data = <$in>;
    close $in;
    return defined $data ? $data : '';
}

# Whether the process $pid is gone or a zombie.  Exited daemons can linger as
# zombies when nobody reaps them, so "kill 0" is not a usable liveness test.
sub process_gone {
    my $pid = shift;
    my $stat = slurp_file("/proc/$pid/stat");
    if (defined $stat) {
        # pid (comm) state ...; comm may contain spaces/parens.
        return 1 if $stat =~ /\)\s+([ZXx])\s/;
        return 0;
    }
    return 1 if -d '/proc/self';        # procfs present, pid absent: gone
    return kill(0, $pid) ? 0 : 1;       # no procfs: best effort
}

sub read_pid {
    my $pid = slurp_file($PidFile);
    return undef unless defined $pid && $pid =~ /(\d+)/;
    return $1;
}

# nginx version as a comparable number (1.19.5 -> 1019005); undef if unknown.
my $NginxVersion;
sub nginx_version {
    return $NginxVersion if defined $NginxVersion;
    my $out = `\Q$NginxBinary\E -v 2>&1`;
    if (defined $out && $out =~ m{nginx/(\d+)\.(\d+)\.(\d+)}) {
        $NginxVersion = $1 * 1000000 + $2 * 1000 + $3;
    } else {
        $NginxVersion = 0;
    }
    return $NginxVersion;
}

sub find_nginx_binary {
    return $NginxBinary if $NginxBinary =~ m{/} && -x $NginxBinary;
    for my $dir (split /:/, ($ENV{PATH} || '')) {
        my $f = File::Spec->catfile($dir, $NginxBinary);
        return $f if -f $f && -x _;
    }
    return undef;
}

# ---------------------------------------------------------------------------
# Server root
# ---------------------------------------------------------------------------

sub setup_server_root {
    for my $dir ($ServRoot, $LogDir, $ConfDir) {
        next if -d $dir;
        File::Path::mkpath($dir) or bail_out("Cannot create $dir: $!\n");
    }
    # The html dir is ours (always $ServRoot/html): start each block clean.
    File::Path::rmtree($HtmlDir) if -d $HtmlDir;
    File::Path::mkpath($HtmlDir) or bail_out("Cannot create $HtmlDir: $!\n");
}

sub truncate_logs {
    for my $f ($ErrLogFile, $AccLogFile) {
        if (open my $fh, '>', $f) { close $fh }
    }
}

# Parse a touch(1)-style timestamp (CCYYMMDDhhmm[.ss]) or epoch seconds.
sub parse_mtime {
    my $t = shift;
    if ($t =~ /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(?:\.(\d\d))?$/) {
        return POSIX::mktime($6 || 0, $5, $4, $3, $2 - 1, $1 - 1900);
    }
    return $t if $t =~ /^\d+$/;
    die "Bad user_files timestamp '$t'\n";
}

# Create the files of a "--- user_files" section.  $spec is either the text
# form (">>> name [mtime]" headers followed by the content) or, from an
# "eval" section, an array ref of [name, content, mtime?] entries.
sub write_user_files {
    my ($spec, $name) = @_;
    return unless defined $spec;

    my @files;
    if (ref $spec eq 'ARRAY') {
        for my $f (@$spec) {
            die "$name - user_files: each entry must be [name, content]\n"
                unless ref $f eq 'ARRAY' && @$f >= 2;
            push @files, [@$f];
        }
    } elsif (!ref $spec) {
        my $cur;
        for my $line (split /^/m, $spec) {
            if ($line =~ /^>>>\s+(\S+)(?:\s+(\S+))?\s*$/) {
                $cur = [$1, '', $2];
                push @files, $cur;
                next;
            }
            if (!$cur) {
                next if $line =~ /^\s*$/;
                die "$name - user_files: content before the first '>>> name'"
                    . " line\n";
            }
            $cur->[1] .= $line;
        }
        for my $f (@files) {
            $f->[1] = expand_env_in_text($f->[1], "user_files");
        }
    } else {
        die "$name - user_files: unsupported value type " . ref($spec) . "\n";
    }

    for my $f (@files) {
        my ($fname, $body, $mtime) = @$f;
        die "$name - user_files: unsafe file name '$fname'\n"
            if $fname =~ m{(?:^|/)\.\.(?:/|$)} || $fname =~ m{^/};
        my $path = File::Spec->catfile($HtmlDir, $fname);
        my (undef, $dir) = File::Spec->splitpath($path);
        File::Path::mkpath($dir) unless -d $dir;
        open my $out, '>:raw', $path
            or bail_out("Cannot write user file $path: $!\n");
        print $out (defined $body ? $body : '');
        close $out;
        if (defined $mtime) {
            my $t = parse_mtime($mtime);
            utime $t, $t, $path;
        }
    }
}

# ---------------------------------------------------------------------------
# nginx.conf
# ---------------------------------------------------------------------------

# The load_module lines from TEST_NGINX_LOAD_MODULES (space separated .so
# paths).  Relative paths are taken relative to the current directory (not
# to nginx's prefix, which is the server root).
sub load_module_lines {
    my $mods = $ENV{TEST_NGINX_LOAD_MODULES};
    return '' unless defined $mods && $mods =~ /\S/;
    my $out = '';
    for my $m (split ' ', $mods) {
        $out .= "load_module " . File::Spec->rel2abs($m) . ";\n";
    }
    return $out;
}

sub env_lines {
    my $out = '';
    for my $e (@EnvToNginx) {
        if ($e =~ /\s/) {
            (my $q = $e) =~ s/'/\\'/g;
            $out .= "env '$q';\n";
        } else {
            $out .= "env $e;\n";
        }
    }
    return $out;
}

# %args: main_config, post_main_config, http_config, config, log_level,
#        server_name.
sub write_config_file {
    my %args = @_;

    my $main_config  = defined $args{main_config} ? $args{main_config} : '';
    my $post_main    = defined $args{post_main_config}
                       ? $args{post_main_config} : '';
    my $http_config  = defined $args{http_config} ? $args{http_config} : '';
    my $config       = defined $args{config} ? $args{config} : '';
    my $log_level    = $args{log_level} || $LogLevel;
    my $server_name  = defined $args{server_name} ? $args{server_name}
                       : $ServerName;

    # When running as root, keep the workers as root too so they can read the
    # server root (and so behaviour matches the master-off single process).
    my $user = '';
    if ($> == 0 && $main_config !~ /^\s*user\s/m) {
        $user = "user root;\n";
    }

    my $root_location = '';
    if (!$NoRootLocation && $config !~ m{\blocation\s+/\s*\{}) {
        $root_location = <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    }

    my $load_modules = load_module_lines();
    my $env = env_lines();

    my $conf = <<"_EOC_";
# Generated by t/lib/Test/Nginx/Util.pm (smart-imaging test harness).
$load_modules
worker_processes  $Workers;
daemon on;
master_process $MasterProcess;
error_log $ErrLogFile $log_level;
pid       $PidFile;
$user$env
# Begin main_config
$main_config
# End main_config

http {
    access_log $AccLogFile;

    default_type text/plain;
    keepalive_timeout  68;

# Begin http_config
$http_config
# End http_config

    server {
        listen          $ServerPort;
        server_name     $server_name;

        client_max_body_size 30M;

$ConfigPreamble
        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}

$post_main
_EOC_

    open my $out, '>', $ConfFile
        or bail_out("Cannot open $ConfFile for writing: $!\n");
    print $out $conf;
    close $out;
}

# ---------------------------------------------------------------------------
# Starting / stopping nginx
# ---------------------------------------------------------------------------

our $NginxRunning = 0;

# Set once this process has started an nginx: only then does the END-time
# cleanup stop the nginx named by the pid file (a process that merely loads
# this module must not stop somebody else's server).
our $StartedNginx = 0;

sub nginx_command {
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    # -e (nginx >= 1.19.5) sends the errors nginx logs before it has read
    # error_log from the config (and config errors) to our error.log rather
    # than to the compiled-in default, which may be unwritable.
    push @cmd, '-e', $ErrLogFile if nginx_version() >= 1019005;
    return @cmd;
}

# Run a command with stdout+stderr to $file; return the wait status.
sub run_to_file {
    my ($file, @cmd) = @_;
    my $pid = fork;
    bail_out("fork failed: $!\n") unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $file or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        print STDERR "exec $cmd[0] failed: $!\n";
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return $?;
}

# Start nginx (daemon on).  Returns (1, '') on success or (0, $why).
sub start_nginx {
    unlink $PidFile;
    $StartedNginx = 1;
    my @cmd = nginx_command();
    diag_verbose("starting: @cmd");
    my $status = run_to_file($StartOutFile, @cmd);
    my $out = slurp_file($StartOutFile);
    $out = '' unless defined $out;
    if ($status != 0) {
        my $code = $status >> 8;
        return (0, "nginx exited with code $code: $out", $code);
    }
    # daemon on: the foreground process has already bound the listening
    # sockets; wait for the daemon to write its pid file.
    my $deadline = Time::HiRes::time() + 5;
    while (Time::HiRes::time() < $deadline) {
        if (defined read_pid()) {
            $NginxRunning = 1;
            return (1, $out, 0);
        }
        Time::HiRes::sleep(0.01);
    }
    return (0, "nginx did not write its pid file $PidFile: $out", undef);
}

# Stop nginx if a pid file says it runs: TERM, wait for the pid file to go
# away (nginx removes it on exit), escalate to KILL.
sub stop_nginx {
    my $pid = read_pid();
    $NginxRunning = 0;
    return 1 unless defined $pid;

    if (process_gone($pid)) {
        unlink $PidFile;
        return 1;
    }

    for my $sig ('TERM', 'KILL') {
        kill $sig, $pid;
        my $deadline = Time::HiRes::time() + ($sig eq 'TERM' ? 5 : 2);
        while (Time::HiRes::time() < $deadline) {
            return 1 if !-e $PidFile;
            if (process_gone($pid)) {
                unlink $PidFile;
                return 1;
            }
            Time::HiRes::sleep(0.01);
        }
        Test::More::diag("nginx (pid $pid) did not exit on SIG$sig")
            if $sig eq 'TERM';
    }
    unlink $PidFile;
    return 0;
}

# Whether the nginx we started is still alive (crash detection).
sub nginx_alive {
    my $pid = read_pid();
    return 0 unless defined $pid;
    return process_gone($pid) ? 0 : 1;
}

my $cleaned = 0;
sub cleanup {
    return if $cleaned++;
    for my $h (@CleanupHandlers) {
        eval { $h->() };
        warn "cleanup handler failed: $@" if $@;
    }
    if ($StartedNginx && !$ENV{TEST_NGINX_NO_CLEAN} && !$NoNginxManager) {
        stop_nginx();
    }
}

END {
    # Keep the test's exit status: cleanup must not clobber $?.
    local $?;
    cleanup();
}

1;
