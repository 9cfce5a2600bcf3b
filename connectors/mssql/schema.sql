-- The shop's source schema with SQL Server Change Tracking enabled, as the
-- CDC bridge (connectors/mssql) expects it. Used by docker-compose to
-- initialise the database; run it with sqlcmd -b -i schema.sql (-b: a SQL
-- error ends sqlcmd with a non-zero status instead of passing silently).
-- Idempotent: every CREATE and ENABLE is guarded, so it runs again on an
-- initialised database (every `docker compose up`) without error.
--
-- Snapshot isolation must be allowed: the bridge reads the current
-- version, the minimum valid version and the changes of each poll in one
-- SNAPSHOT transaction so they agree.
--
-- CHANGE_RETENTION bounds how long the bridge may be down before it has to
-- resynchronise from a full snapshot (it logs a warning and counts
-- rtm_cdc_resyncs_total when it does).

IF DB_ID(N'shop') IS NULL CREATE DATABASE shop;
GO
ALTER DATABASE shop SET ALLOW_SNAPSHOT_ISOLATION ON;
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID(N'shop'))
    ALTER DATABASE shop SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 3 DAYS, AUTO_CLEANUP = ON);
GO
USE shop;
GO

IF OBJECT_ID(N'dbo.members', N'U') IS NULL
CREATE TABLE dbo.members (
    member_id     NVARCHAR(64)  NOT NULL PRIMARY KEY,
    email         NVARCHAR(320) NULL,
    line_user_id  NVARCHAR(64)  NULL,
    push_token    NVARCHAR(512) NULL,
    mail_opt_in   BIT           NOT NULL DEFAULT 0,
    line_opt_in   BIT           NOT NULL DEFAULT 0,
    push_opt_in   BIT           NOT NULL DEFAULT 0,
    status        NVARCHAR(16)  NOT NULL DEFAULT N'active'
                  CONSTRAINT ck_members_status CHECK (status IN (N'active', N'withdrawn')),
    is_debug      BIT           NOT NULL DEFAULT 0,
    gender        NVARCHAR(16)  NULL,
    birthday      DATE          NULL,
    prefecture    NVARCHAR(32)  NULL,
    timezone      NVARCHAR(64)  NOT NULL DEFAULT N'Asia/Tokyo',
    registered_at DATETIME2(3)  NOT NULL,
    -- the shop's segments the member is in, comma-separated (audience=segment)
    segments      NVARCHAR(400) NULL
);
GO
IF OBJECT_ID(N'dbo.items', N'U') IS NULL
CREATE TABLE dbo.items (
    item_id   NVARCHAR(64)   NOT NULL PRIMARY KEY,
    name      NVARCHAR(400)  NOT NULL,
    brand     NVARCHAR(200)  NULL,
    category  NVARCHAR(200)  NULL,
    price     DECIMAL(12, 2) NOT NULL,
    stock     INT            NOT NULL DEFAULT 0,
    url       NVARCHAR(2000) NULL,
    image_url NVARCHAR(2000) NULL
);
GO
IF OBJECT_ID(N'dbo.favorites', N'U') IS NULL
CREATE TABLE dbo.favorites (
    member_id  NVARCHAR(64) NOT NULL,
    item_id    NVARCHAR(64) NOT NULL,
    created_at DATETIME2(3) NOT NULL,
    CONSTRAINT pk_favorites PRIMARY KEY (member_id, item_id)
);
GO
-- orders' primary key starts with member_id: Change Tracking reports only
-- primary-key columns for a deleted row, and the bridge needs member_id to
-- key (partition) every record, deletes included. order_id stays unique.
IF OBJECT_ID(N'dbo.orders', N'U') IS NULL
CREATE TABLE dbo.orders (
    order_id   NVARCHAR(64)   NOT NULL CONSTRAINT uq_orders_order_id UNIQUE,
    member_id  NVARCHAR(64)   NOT NULL,
    item_id    NVARCHAR(64)   NOT NULL,
    status     NVARCHAR(32)   NOT NULL,
    total      DECIMAL(12, 2) NOT NULL,
    ordered_at DATETIME2(3)   NOT NULL,
    CONSTRAINT pk_orders PRIMARY KEY (member_id, order_id)
);
GO
IF OBJECT_ID(N'dbo.cart_items', N'U') IS NULL
CREATE TABLE dbo.cart_items (
    member_id NVARCHAR(64) NOT NULL,
    item_id   NVARCHAR(64) NOT NULL,
    quantity  INT          NOT NULL,
    added_at  DATETIME2(3) NOT NULL,
    CONSTRAINT pk_cart_items PRIMARY KEY (member_id, item_id)
);
GO

IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.members'))
    ALTER TABLE dbo.members ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.items'))
    ALTER TABLE dbo.items ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.favorites'))
    ALTER TABLE dbo.favorites ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.orders'))
    ALTER TABLE dbo.orders ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.cart_items'))
    ALTER TABLE dbo.cart_items ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
